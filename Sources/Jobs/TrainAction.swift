import Data
import Foundation
import Imaging
import Models
import Remote
import Retrieval
import Spec
import Torch
import Training

/// `clipkit train`: fine-tunes (or trains from random init) on custom-layout image-caption pairs
/// with TAO's loss, optimiser groups, per-step schedule and checkpoints.
func runTrain(_ ctx: ActionContext) throws {
  let cfg = ctx.config
  let t = cfg.train
  let device = ctx.device
  // Data-parallel ranks (torchrun's variables): rank 0 alone writes and prints.
  let group = ctx.group
  let (rank, world) = (group?.rank ?? 0, group?.worldSize ?? 1)
  let isMain = rank == 0
  // fp16: autocast to float16 with dynamic loss scaling (libtorch runs both on CPU too, through
  // slower reference kernels, so a spec written for GPUs still runs here).
  let scaler = t.precision == "fp16" ? GradScaler() : nil
  if scaler != nil && !device.isCUDA {
    print("note: train.precision=fp16 on CPU runs fp16 autocast with loss scaling but no faster than fp32; bf16 is the fast CPU choice")
  }
  if t.optim.optimizerType != "adamw" { throw ActionError.input("train.optim.optimizer_type=\(t.optim.optimizerType): only adamw is available") }
  // torch.optim.AdamW's rule: two coefficients, each in [0, 1).
  guard t.optim.betas.count == 2, t.optim.betas.allSatisfy({ $0 >= 0 && $0 < 1 }) else {
    throw ActionError.input("train.optim.betas=\(t.optim.betas): needs two values [beta1, beta2], each in [0, 1)")
  }
  let aug = cfg.dataset.augmentation
  if !aug.colorJitter.isEmpty && ![4, 5].contains(aug.colorJitter.count) {
    warn("dataset.augmentation.color_jitter has \(aug.colorJitter.count) values (expected [p, brightness, contrast, saturation, hue]); colour jitter is off")
  }
  if let bad = Augmentation.invalidParameters(scale: aug.scale, colorJitter: aug.colorJitter).first {
    let value = bad.list == "scale" ? aug.scale : aug.colorJitter
    throw ActionError.input("dataset.augmentation.\(bad.list)=\(value): \(bad.reason)")
  }

  if t.seed >= 0 { try Torch.manualSeed(UInt64(t.seed)) }
  try Torch.setCuDNN(benchmark: t.cudnn.benchmark, deterministic: t.cudnn.deterministic)
  try setMathMode(device, precision: t.precision)
  guard let loss = ContrastiveLoss(rawValue: t.lossType) else {
    throw ActionError.input("train.loss_type=\(t.lossType): only siglip and clip are available")
  }
  let initScale = cfg.model.initLogitScale ?? (loss == .siglip ? 2.3026 : 2.6592)
  let initBias = cfg.model.initLogitBias ?? (loss == .siglip ? -10.0 : 0.0)
  func loadBundle() throws -> CLIPBundle {
    let b = try ModelRegistry.load(ModelLoadOptions(type: cfg.model.type, pretrainedDir: cfg.model.pretrainedDir, adaptorName: cfg.model.adaptorName,
                                                    canonicalize: cfg.model.canonicalizeText, initLogitScale: initScale, initLogitBias: initBias,
                                                    randomInit: cfg.model.randomInit ? try Generator(seed: UInt64(max(t.seed, 0))) : nil,
                                                    imageSize: cfg.model.imageSize, device: device))
    if let pre = t.pretrainedModelPath { try ModelRegistry.loadCheckpoint(pre, into: b) }
    return b
  }
  let bundle = try loadBundle()
  if let pre = t.pretrainedModelPath { print("Loaded weights from \(pre)") }
  // regularization: a frozen copy of the model as it starts (built before LoRA, as TAO's teacher).
  let teacher = cfg.regularization.enabled ? try loadBundle() : nil
  if let teacher {
    teacher.encoder.module.eval()
    for (_, p) in teacher.encoder.module.namedParameters() { try p.requiresGrad(false) }
    let r = cfg.regularization
    print("Frozen teacher for drift regularisation: \(teacher.encoder.module.parameters().reduce(0) { $0 + $1.count }) parameters; "
      + "weights emb_mse=\(r.embeddingMseWeight), cosine=\(r.cosineWeight), sim=\(r.similarityWeight)")
  }
  let adapter = bundle.encoder.module
  bundle.encoder.gradientCheckpointing = t.gradCheckpointing

  let trainSet: PairSet
  var missingSamples = 0  // estimated samples of shards that could not be opened
  let isWDS = cfg.dataset.train.type == "wds"
  if isWDS {
    let w = cfg.dataset.train.wds
    let shards = try WebDataset.shards(rootDir: w?.rootDir, listFile: w?.shardListFile)
    guard !shards.isEmpty else { throw ActionError.input("no .tar shards found for dataset.train.wds") }
    let remote = shards.filter(ShardLocation.isRemote).count
    RemoteShards.install()
    // Remote shards are streamed once to index them; that pass shows progress. With several ranks
    // each streams a share (every W-th shard) and the indexes are exchanged: the bucket is read
    // once, not once per rank.
    let shared = world > 1 && remote > 0 ? group : nil
    let mine = shared == nil ? Array(shards.indices) : Array(stride(from: rank, to: shards.count, by: world))
    nonisolated(unsafe) let indexing = remote > 0 ? Progress("indexing \(remote) remote shard\(remote == 1 ? "" : "s")"
      + (shared == nil ? "" : " (\(mine.count) on this rank)"), total: mine.count, unit: "shard") : nil
    let lock = NSLock()
    let done: (@Sendable () -> Void)? = indexing == nil ? nil : { @Sendable () -> Void in lock.withLock { indexing?.advance() }; return }
    if let shared {
      let parts = WebDataset.indexEach(mine.map { shards[$0] }, done: done)
      var all = [PairSet?](repeating: nil, count: shards.count)
      for (r, bytes) in try shared.allGatherBytes(Array(try JSONEncoder().encode(parts))).enumerated() {
        let theirs = try JSONDecoder().decode([PairSet].self, from: Data(bytes))
        for (k, i) in stride(from: r, to: shards.count, by: world).enumerated() where k < theirs.count { all[i] = theirs[k] }
      }
      guard all.allSatisfy({ $0 != nil }) else { throw ActionError.input("the ranks' shard indexes do not cover the shard list (do all ranks read the same list?)") }
      trainSet = WebDataset.merged(all.map { $0! })
    } else {
      trainSet = WebDataset.index(shards, done: done)
    }
    print("Indexed \(shards.count) shard\(shards.count == 1 ? "" : "s"): \(trainSet.pairs.count) samples")
    // TAO streams shards and only estimates an epoch as shards × samples_per_shard; the index
    // gives the exact count, which sets the epoch length and resume position here.
    // samples_per_shard is only compared (as a double: any value is fine, even near Int.max).
    let estimate = Double(shards.count) * Double(w?.samplesPerShard ?? 10000)
    if abs(Double(trainSet.pairs.count) - estimate) * 10 > estimate {
      print("note: dataset.train.wds.samples_per_shard=\(w?.samplesPerShard ?? 10000) estimates \(String(format: "%.0f", estimate)) samples; epochs use the \(trainSet.pairs.count) counted")
    }
    for s in trainSet.brokenShards {
      warn("shard \(s) is \(trainSet.damage[s] ?? "truncated or unreadable"); its samples before the damage are used, the rest are skipped")
    }
    for s in trainSet.unopened { warn("shard \(s) is skipped: \(trainSet.damage[s] ?? "it cannot be read")") }
    if !trainSet.unopened.isEmpty {
      // A shard that could not be opened counts as many unreadable samples as a readable shard
      // holds on average, in the same 10 % limit as unreadable images.
      let readable = shards.count - trainSet.unopened.count
      missingSamples = readable > 0 ? max(1, trainSet.pairs.count * trainSet.unopened.count / readable)
        : trainSet.unopened.count * min(max(w?.samplesPerShard ?? 10000, 1), 1 << 40)
      if missingSamples * 10 > trainSet.pairs.count + missingSamples {
        throw ActionError.input("\(trainSet.unopened.count) of the \(shards.count) shards could not be read (about \(missingSamples) samples, "
          + "more than 10 % of the data): " + trainSet.unopened.prefix(3).map { "\($0) (\(trainSet.damage[$0] ?? "unreadable"))" }.joined(separator: ", "))
      }
    }
  } else {
    guard !cfg.dataset.train.datasets.isEmpty else { throw ActionError.input("dataset.train.datasets is empty") }
    trainSet = try customPairs(try customDatasets(cfg.dataset.train.datasets, section: "dataset.train.datasets"), section: "dataset.train.datasets")
  }
  if trainSet.skippedCaptions > 0 { warn("\(trainSet.skippedCaptions) training samples without a (non-empty) caption were skipped") }
  let trainPairs = trainSet.pairs
  let batch = cfg.dataset.train.batchSize
  // Each rank reads its share: DistributedSampler's ⌈n / W⌉ samples (the last ones repeated) of a
  // folder set; a contiguous ⌊n / W⌋ run of the shard stream (WebDataset.epochOrder).
  let perRank = isWDS ? trainPairs.count / world : (trainPairs.count + world - 1) / world
  guard perRank >= batch else {
    throw ActionError.input("the training set has \(trainPairs.count) pairs, fewer than one batch of dataset.train.batch_size=\(batch)"
      + (world > 1 ? " for each of the \(world) ranks" : ""))
  }
  let val = cfg.dataset.val.datasets.isEmpty ? nil
    : try customPairs(try customDatasets(cfg.dataset.val.datasets, section: "dataset.val.datasets"), section: "dataset.val.datasets")

  // Parameter groups (§3.4): vision / text / logit × decay / no-decay.
  let frozen = Set([cfg.model.freezeVisionEncoder ? Tower.vision : nil, cfg.model.freezeTextEncoder ? .text : nil].compactMap { $0 })
  for tower in frozen { try setTower(bundle.encoder, tower, trainable: false) }
  // peft: LoRA / full / frozen per tower (after the freeze flags, which it overrides, as TAO).
  try injectPEFT(bundle.encoder, cfg.peft)
  let groups = parameterGroups(bundle.encoder, optim: t.optim)
  let optimizer = AdamW(groups: groups, betas: (t.optim.betas[0], t.optim.betas[1]), eps: t.optim.eps)

  let stepsPerEpoch = perRank / batch
  let (totalSteps, tooMany) = stepsPerEpoch.multipliedReportingOverflow(by: t.numEpochs)
  guard !tooMany else {
    throw ActionError.input("train.num_epochs=\(t.numEpochs) × \(stepsPerEpoch) steps per epoch is more steps than a 64-bit counter holds")
  }
  var startEpoch = 0, globalStep = 0
  // Each step reseeds the global generators from (seed, step) before its forward (dropout, drop
  // path and RADIO's crops draw from them); an unseeded run draws its base once and keeps it in
  // its checkpoints.
  var seedBase = t.seed >= 0 ? UInt64(t.seed) : UInt64.random(in: 0...UInt64(UInt32.max))
  // Temporary files of a run that was killed while writing are never under a final name; drop them.
  for f in (isMain ? (try? FileManager.default.contentsOfDirectory(atPath: ctx.resultsDir)) ?? [] : []) where f.hasPrefix(".") && f.contains(".tmp-") {
    try? FileManager.default.removeItem(atPath: ctx.resultsDir + "/" + f)
  }
  let latest = ctx.resultsDir + "/clip_latest.pth"
  var resumePath = t.resumeTrainingCheckpointPath ?? (FileManager.default.fileExists(atPath: latest) ? latest : nil)
  if let group {
    // Rank 0 decides whether the run resumes; every rank then reads the same file (results_dir
    // must be shared), and all must agree on the data and the step they start from.
    let flag = try Tensor([resumePath == nil ? Double(0) : 1]).moved(to: group.device)
    try group.broadcast(flag, root: 0)
    if try flag.item() == 0 { resumePath = nil } else if resumePath == nil {
      throw ActionError.input("rank \(rank) cannot find \(t.resumeTrainingCheckpointPath ?? latest), which rank 0 resumes from: the ranks need a shared results_dir")
    }
  }
  if let resume = resumePath {
    guard resume.hasSuffix(".pth") else { throw ActionError.input("train.resume_training_checkpoint_path must be a .pth file: \(resume)") }
    let (step, saved, savedSeed) = try resumeFrom(resume, encoder: bundle.encoder, optimizer: optimizer, scaler: scaler)
    globalStep = step
    if t.seed < 0, let savedSeed { seedBase = savedSeed }
    // Steps per epoch depend on the number of ranks: a run continues only with the layout it had.
    guard saved == world else {
      throw ActionError.input("\(resume) was saved by a run of \(saved) rank\(saved == 1 ? "" : "s") and this run has \(world): "
        + "resume it with \(saved) rank\(saved == 1 ? "" : "s"), or use another results_dir to start afresh")
    }
    startEpoch = globalStep / stepsPerEpoch
    // A checkpoint past the end of this run (a smaller num_epochs, or another data set) cannot
    // be continued; one exactly at the end has nothing left to do.
    guard globalStep <= totalSteps else {
      throw ActionError.input("\(resume) was saved at step \(globalStep) (epoch \(startEpoch + 1) at \(stepsPerEpoch) steps per epoch), past the end of "
        + "train.num_epochs=\(t.numEpochs) (\(totalSteps) steps); raise train.num_epochs to continue it, or use another results_dir to start afresh")
    }
    if globalStep == totalSteps {
      print("Training is already complete: \(resume) is at step \(globalStep), the end of train.num_epochs=\(t.numEpochs)")
    } else {
      print("Resumed from \(resume) at epoch \(startEpoch + 1), step \(globalStep)")
    }
  }
  if let group {
    // The ranks must agree on the data they shard and where they start; then every replica takes
    // rank 0's weights (DistributedDataParallel's first broadcast).
    let mine = [Double(trainPairs.count), Double(stepsPerEpoch), Double(globalStep)]
    let all = try group.allGather(try Tensor(mine).moved(to: group.device)).toArray(Double.self)
    for r in 0..<world where Array(all[(r * 3)..<(r * 3 + 3)]) != Array(all[0..<3]) {
      throw ActionError.input("rank \(r) has \(Int(all[r * 3])) training pairs, \(Int(all[r * 3 + 1])) steps per epoch and starts at step \(Int(all[r * 3 + 2])), "
        + "rank 0 \(Int(all[0])), \(Int(all[1])) and \(Int(all[2])): every rank must see the same data set and checkpoint")
    }
    try group.broadcast(adapter.stateDict().map(\.1))
  }
  print("Training \(trainPairs.count) pairs, \(stepsPerEpoch) steps/epoch × \(t.numEpochs) epochs, batch \(batch), \(t.precision), loss \(t.lossType)")
  let embedder = Embedder(bundle: bundle, batchSize: cfg.dataset.val.batchSize, workers: cfg.dataset.val.numWorkers)
  let teacherEmbedder = teacher.map { Embedder(bundle: $0, batchSize: cfg.dataset.val.batchSize, workers: cfg.dataset.val.numWorkers) }
  let (h, w) = bundle.transform.outputSize
  let augmentation = Augmentation(size: (w, h), scale: aug.scale, colorJitter: aug.colorJitter, grayscale: aug.grayscale)
  // As in TAO, SigLIP 2 trains on its Hugging Face processor's preprocessing: dataset.augmentation
  // is for RADIO and OpenCLIP only (TAO warns and ignores it too).
  let augments = bundle.trainsWithAugmentation
  if !augments && !augmentation.isIdentity {
    print("note: SigLIP models train on their processor's preprocessing, as in TAO: dataset.augmentation is not applied")
  }
  // TensorBoard logs where TAO's Lightning logger puts them.
  let board = isMain ? try TensorBoardWriter(directory: ctx.resultsDir + "/lightning_logs/version_1") : nil
  var badSamples = missingSamples, readSamples = missingSamples
  var skippedSteps = 0  // fp16 steps whose gradients overflowed
  var stepSeconds = 0.0  // forward, backward, gradient averaging and optimizer (not data waits)
  let runStart = Date()
  let logLoss = ctx.hooks.logLoss
  let crashAfter = ctx.hooks.crashAfterEpoch, crashAfterStep = ctx.hooks.crashAfterStep

  /// Retrieval metrics on dataset.val; returns status kpis and TensorBoard values.
  func validate() throws -> ([String: Any], [(String, Double)]) {
    guard let val, !val.pairs.isEmpty else { return ([:], []) }
    adapter.eval()
    defer { bundle.encoder.train(frozen: frozen) }
    let m: (i2t: RetrievalMetrics, t2i: RetrievalMetrics)
    var drifts: [(String, Double)] = []
    if let group {
      // Each rank embeds its share (DistributedSampler order, unshuffled, padded); the embeddings
      // are gathered back into the set's order, so every rank scores the whole set.
      let n = val.pairs.count
      let positions = Array(stride(from: rank, to: (n + world - 1) / world * world, by: world))
      let mine = positions.map { $0 % n }
      let img = try embedder.images(mine.map { val.pairs[$0].image }, progressLabel: "validation")
      let txt = try embedder.texts(img.kept.map { val.pairs[mine[$0]].caption })
      let all = try gatherEmbeddings(group, rows: positions.count, keptRows: img.kept,
                                     sampleIndex: img.kept.map { positions[$0] < n ? mine[$0] : nil },
                                     image: img.embeddings, text: txt.embeddings, dim: img.dim)
      m = try retrievalMetrics(images: all.image, texts: all.text, count: all.count, dim: all.dim)
    } else {
      let img = try embedder.images(val.pairs.map(\.image), progressLabel: "validation")
      let caps = img.kept.map { val.pairs[$0].caption }
      let txt = try embedder.texts(caps)
      m = try retrievalMetrics(images: img.embeddings, texts: txt.embeddings, count: caps.count, dim: img.dim)
      if let teacherEmbedder {
        // TAO's drift metric: 1 − mean cosine to the frozen teacher, per tower and averaged.
        let ti = try teacherEmbedder.images(img.kept.map { val.pairs[$0].image }, progressLabel: "teacher")
        let tt = try teacherEmbedder.texts(caps)
        func drift(_ a: [Float], _ b: [Float]) throws -> Double {
          let (x, y) = (try Tensor(a, shape: [caps.count, img.dim]), try Tensor(b, shape: [caps.count, img.dim]))
          return try 1 - cosineSimilarity(x, y).mean().item()
        }
        let (di, dt) = (try drift(img.embeddings, ti.embeddings), try drift(txt.embeddings, tt.embeddings))
        drifts = [("val/img_drift", di), ("val/txt_drift", dt), ("val/embedding_drift", (di + dt) / 2)]
        print(String(format: "  val drift from the teacher: image %.6f, text %.6f, mean %.6f", di, dt, (di + dt) / 2))
      }
    }
    print("  val Image-to-Text: \(m.i2t.line)")
    print("  val Text-to-Image: \(m.t2i.line)")
    var kpi: [String: Any] = [:]
    var values: [(String, Double)] = []
    for (p, r) in [("i2t", m.i2t), ("t2i", m.t2i)] {
      kpi["val/\(p)_mAP"] = String(r.mAP); kpi["val/\(p)_R@1"] = String(r.recallAt1)
      kpi["val/\(p)_MedR"] = String(r.medianRank); kpi["val/\(p)_AUC"] = String(r.auc)
      values += [("val/\(p)_mAP", r.mAP), ("val/\(p)_R@1", r.recallAt1), ("val/\(p)_R@5", r.recallAt5),
                 ("val/\(p)_MedR", r.medianRank), ("val/\(p)_MeanR", r.meanRank), ("val/\(p)_AUC", r.auc)]
    }
    values += drifts
    if let d = drifts.last { kpi[d.0] = String(d.1) }
    return (kpi, values)
  }

  // Each sample's augmentation draws come from (seed, epoch, sample): the same on any thread. As
  // in TAO, the data side is seeded by dataset.seed (its loaders reseed with it), the model by train.seed.
  let seed = UInt64(bitPattern: Int64(cfg.dataset.seed))
  let (decoder, transform, preprocess) = (ImageDecoder(), bundle.transform, bundle.preprocess)
  let plain = augmentation.isIdentity || !augments
  @Sendable func sample(_ id: Int, epoch: Int) -> ImageInput? {
    let src = trainPairs[id].image
    guard let bytes = try? src.bytes(), let img = try? decoder.decode(bytes: bytes, name: src.name) else { return nil }
    if plain { return preprocess(img) }
    var rng = SeededRandom(seed: seed &* 1_000_003 &+ UInt64(epoch) &* 7_919 &+ UInt64(id))
    return .pixels(transform.normalizedOnly(augmentation(img, rng: &rng)), height: h, width: w)
  }

  let params = groups.flatMap { $0.params.map(\.1) }
  let clip = { if let c = t.gradClipNorm { try clipGradNorm(params, maxNorm: c) } }
  // Gradients are averaged across ranks while backward runs (DDP's bucketed reducer).
  let reducer = try group.map { try GradientReducer($0, params: params.filter(\.requiresGrad), bucketBytes: try gradientBucketBytes()) }

  for epoch in startEpoch..<t.numEpochs {
    bundle.encoder.train(frozen: frozen)
    // Shards are read shard by shard in a per-epoch shuffled order through a shuffle buffer, as a
    // streaming WebDataset does, each rank its own run of shards; folders are shuffled over the
    // whole set (RandomSampler) and dealt out to ranks (DistributedSampler).
    let mine: [Int]
    if isWDS {
      var rng = SeededRandom(seed: seed &+ UInt64(epoch))
      mine = WebDataset.epochOrder(trainPairs, rng: &rng, rank: rank, worldSize: world)
    } else {
      let order = try Tensor.randperm(trainPairs.count, generator: try Generator(seed: seed &+ UInt64(epoch))).toArray(Int64.self).map(Int.init)
      mine = shard(order, rank: rank, worldSize: world)
    }
    let batches = (0..<stepsPerEpoch).map { Array(mine[($0 * batch)..<(($0 + 1) * batch)]) }
    if isWDS {
      // Remote shards are streamed in read order: the epoch's reads (after a resume's skipped steps) are announced.
      let first = (epoch == startEpoch ? globalStep - epoch * stepsPerEpoch : 0) * batch
      RemoteReads.shared.plan(mine[min(first, mine.count)..<stepsPerEpoch * batch].map { trainPairs[$0].image })
    }
    let progress = Progress("epoch \(epoch + 1)/\(t.numEpochs)", total: stepsPerEpoch, unit: "step")
    var epochLoss = 0.0
    let epochStart = Date()
    let skip = epoch == startEpoch ? globalStep - epoch * stepsPerEpoch : 0  // mid-epoch resume
    if skip > 0 { progress.advance(skip) }
    // Decoding and augmentation run on dataset.train.num_workers threads, two batches ahead.
    let loader = BatchPrefetcher<ImageInput>(batches: batches, start: skip, workers: cfg.dataset.train.numWorkers, depth: 2) {
      sample($0, epoch: epoch)
    }
    defer { loader.stop() }
    for s in skip..<stepsPerEpoch {
      let idx = batches[s]
      guard let slots = loader.next() else { break }
      var ok = idx.indices.filter { slots[$0] != nil }
      var (bad, read) = (idx.count - ok.count, idx.count)
      if let group {
        // Every rank must hold the same number of pairs (the exchanges are sized by it) and judge
        // the unreadable share alike: the ranks' counts are gathered, and each keeps the smallest
        // count of readable pairs.
        let counts = try group.allGather(try Tensor([Double(ok.count), Double(bad), Double(read)]).moved(to: group.device)).toArray(Double.self)
        let fewest = stride(from: 0, to: counts.count, by: 3).map { Int(counts[$0]) }.min() ?? 0
        (bad, read) = (stride(from: 1, to: counts.count, by: 3).map { Int(counts[$0]) }.reduce(0, +),
                       stride(from: 2, to: counts.count, by: 3).map { Int(counts[$0]) }.reduce(0, +))
        ok = Array(ok.prefix(fewest))
      }
      badSamples += bad
      readSamples += read
      // The documented limit: more than 10 % unreadable among the samples read so far, judged once
      // 100 samples (or the whole set, if smaller) have been read.
      if readSamples >= min(100, trainPairs.count) && badSamples * 10 > readSamples {
        throw ActionError.input("\(badSamples) of the \(readSamples) training samples read so far are unreadable (more than 10 %); check the data")
      }
      // A step with fewer than two readable pairs (on any rank) is skipped, by every rank alike.
      guard ok.count >= 2 else { progress.advance(); continue }
      let stepStart = DispatchTime.now().uptimeNanoseconds
      defer { stepSeconds += Double(DispatchTime.now().uptimeNanoseconds - stepStart) / 1e9 }
      let inputs = ok.map { slots[$0]! }
      let enc = try bundle.tokenize(ok.map { trainPairs[idx[$0]].caption })
      let ids = try Tensor(enc.ids.flatMap { $0.map(Int64.init) }, shape: [ok.count, enc.ids[0].count])
      let mask = bundle.encoder.usesTextAttentionMask
        ? try Tensor(enc.attentionMask.flatMap { $0.map(Int64.init) }, shape: [ok.count, enc.ids[0].count]) : nil
      for g in optimizer.groups.indices {
        optimizer.groups[g].lr = scheduledLR(base: optimizer.groups[g].baseLR, step: globalStep, warmup: t.optim.warmupSteps,
                                             total: totalSteps, kind: t.optim.scheduler)
      }
      try Torch.manualSeed(stepSeed(seedBase, step: globalStep))
      var terms: DriftTerms? = nil
      let lossValue = try autocast(device, dtype: scaler != nil ? .float16 : .bfloat16, enabled: t.precision != "fp32") { () throws -> Tensor in
        let img = try bundle.encoder.encodeImages(inputs).to(.float32)
        let txt = try bundle.encoder.encodeTexts(ids, attentionMask: mask).to(.float32)
        let contrastive = try rankLoss(loss, distImpl: t.siglipLossDistImpl, image: img, text: txt, logitScale: bundle.encoder.logitScale,
                                       logitBias: bundle.encoder.logitBias, group: group)
        guard let teacher else { return contrastive }
        let (ti, tt) = try noGrad { (try teacher.encoder.encodeImages(inputs).to(.float32), try teacher.encoder.encodeTexts(ids, attentionMask: mask).to(.float32)) }
        let d = try DriftTerms(image: img, text: txt, teacherImage: ti, teacherText: tt, contrastive: contrastive, weights: cfg.regularization)
        terms = d
        return d.total
      }
      try optimizer.zeroGrad()
      // With CLIPKIT_LOG_LOSS the (averaged, unscaled, unclipped) gradient norm is logged too, in
      // all and per tower.
      var gradNorm: String? = nil
      func norms() throws -> String {
        let tower = { (t: String) in groups.filter { $0.name.hasPrefix(t) }.flatMap { $0.params.map(\.1) } }
        return String(format: " grad_norm %.9g towers %.9g %.9g", try gradientNorm(params), try gradientNorm(tower("vision")),
                      try gradientNorm(tower("text")))
      }
      if let scaler {
        try reducer?.prepare()
        try scaler.scaled(lossValue).backward()
        // Averaged before unscaling, so every rank sees the same overflow and skips the same steps.
        try reducer?.finish()
        let stepped = try scaler.step(params, beforeStep: {
          if logLoss { gradNorm = try norms() }
          try clip()
        }, { try optimizer.step() })
        if !stepped { skippedSteps += 1 }
      } else {
        try reducer?.prepare()
        try lossValue.backward()
        try reducer?.finish()
        if logLoss { gradNorm = try norms() }
        try clip()
        try optimizer.step()
      }
      try noGrad { try bundle.encoder.logitScale.clamp_(min: 0, max: Foundation.log(100)) }
      // The step's loss is the ranks' mean (the single-process loss on the whole batch).
      let reported = try lossValue.detach().reshape([1]).clone()
      if let group {
        try group.allReduce(reported)
        try reported.mul_(1 / Double(world))
      }
      let l = try reported.item()
      guard l.isFinite else { throw ActionError.input("the loss became \(l) at step \(globalStep); lower the learning rates or add warmup") }
      epochLoss += l
      let lrs = Dictionary(optimizer.groups.map { ($0.name, $0.lr) }, uniquingKeysWith: { a, _ in a })
      try board?.scalars([("train_loss", l), ("train/vision_lr", lrs["vision_decay"] ?? lrs["vision_no_decay"] ?? 0),
                         ("train/text_lr", lrs["text_decay"] ?? lrs["text_no_decay"] ?? 0), ("train/lr", lrs["text_decay"] ?? lrs["text_no_decay"] ?? 0),
                         ("train/logit_scale", try bundle.encoder.logitScale.exp().item())] + (try terms?.scalars() ?? []), step: globalStep)
      globalStep += 1
      progress.advance()
      if t.checkpointIntervalUnit == "step" && globalStep % t.checkpointInterval == 0 {
        let path = ctx.resultsDir + "/step_\(globalStep).pth"
        if isMain {
          try saveCheckpoint(path, encoder: bundle.encoder, optimizer: optimizer, scaler: scaler, epoch: epoch, globalStep: globalStep, worldSize: world, seed: seedBase)
          try linkLatest(ctx.resultsDir, to: "step_\(globalStep).pth")
        }
        try group?.barrier()
        if crashAfterStep == globalStep { fflush(nil); _exit(137) }
      }
      if let every = t.valCheckInterval, every > 0, globalStep % every == 0 {
        let (kpi, values) = try validate()
        try board?.scalars(values, step: globalStep)
        if !kpi.isEmpty { try ctx.status.write(.running, message: "Validation at step \(globalStep)", kpi: kpi, extra: ["step": globalStep]) }
      }
      if logLoss { print(String(format: "step %d loss %.9g", globalStep, l) + (gradNorm ?? "")) }
    }
    let meanLoss = epochLoss / Double(max(stepsPerEpoch, 1))
    let elapsed = Date().timeIntervalSince(epochStart)
    let remaining = Double(t.numEpochs - epoch - 1) * Date().timeIntervalSince(runStart) / Double(epoch - startEpoch + 1)
    let memory = peakMemory(device)
    print(String(format: "epoch %d/%d: train_loss %.4f, logit_scale %.3f, %.1f s", epoch + 1, t.numEpochs, meanLoss,
                 try bundle.encoder.logitScale.exp().item(), elapsed) + (memory.isEmpty ? "" : ", " + memory))
    var kpi: [String: Any] = ["train_loss": meanLoss]
    var boardValues: [(String, Double)] = [("train_loss_epoch", meanLoss)]
    if t.valCheckInterval == nil && (epoch + 1) % t.validationInterval == 0 {
      let (k, v) = try validate()
      kpi.merge(k) { a, _ in a }
      boardValues += v
    }
    try board?.scalars(boardValues, step: globalStep)
    try board?.flush()
    try ctx.status.write(.running, message: "Training loop in progress", kpi: kpi, extra: [
      "epoch": epoch, "max_epoch": t.numEpochs - 1, "step": globalStep, "max_step": totalSteps,
      "time_per_epoch": Progress.duration(elapsed), "time_per_step": String(format: "%.3f", elapsed / Double(max(stepsPerEpoch, 1))),
      "eta": Progress.duration(remaining),
    ])
    if t.checkpointIntervalUnit == "epoch" && (epoch + 1) % t.checkpointInterval == 0 || epoch + 1 == t.numEpochs {
      let path = ctx.resultsDir + "/epoch_\(epoch + 1).pth"
      if isMain {
        try saveCheckpoint(path, encoder: bundle.encoder, optimizer: optimizer, scaler: scaler, epoch: epoch, globalStep: globalStep, worldSize: world, seed: seedBase)
        try linkLatest(ctx.resultsDir, to: "epoch_\(epoch + 1).pth")
        print("  saved \(path)")
      }
      // Other ranks wait for the file, so a rank killed now leaves a complete checkpoint behind.
      try group?.barrier()
    }
    if crashAfter == epoch + 1 { fflush(nil); _exit(137) }
  }
  if badSamples > 0 { warn("\(badSamples) unreadable training samples were skipped") }
  if let scaler { print("fp16 loss scaling: \(skippedSteps) steps skipped for overflowing gradients; scale now \(scaler.scale)") }
  if let group, let reducer {
    // DDP keeps replicas identical by construction; check it (bitwise) before reporting success.
    let differing = try Tensor([Float(0)]).moved(to: group.device)
    try noGrad {
      for (_, p) in adapter.stateDict() {
        let reference = try p.detach().clone()
        try group.broadcast(reference, root: 0)
        if try reference.eq(p).logicalNot().sum().item() > 0 { try differing.add_(try Tensor([Float(1)]).moved(to: group.device)) }
      }
    }
    try group.allReduce(differing)
    let n = try differing.item()
    guard n == 0 else { throw ActionError.input("the \(world) replicas ended with different parameters (\(Int(n)) tensor differences): a rank diverged") }
    if world > 1 { print("All \(world) replicas hold bitwise identical parameters") }
    // What backward did not hide: the wait after it for the buckets still in flight.
    print(String(format: "Gradient all-reduce: %d buckets a step, %d of %d started during backward; %.2f s of %.1f s in training steps on rank 0 waited for after backward (%.0f %%)",
                 reducer.bucketCount, reducer.overlappedBuckets, reducer.reducedBuckets,
                 reducer.exposedSeconds, stepSeconds, 100 * reducer.exposedSeconds / max(stepSeconds, 1e-9))
          + (reducer.redoneSteps > 0 ? "; \(reducer.redoneSteps) steps reduced again (a gradient accumulated twice)" : ""))
  }
  try ctx.status.write(.success, message: "Train finished successfully.")
}

func setTower(_ e: CLIPEncoder, _ tower: Tower, trainable: Bool) throws {
  for (k, p) in e.module.namedParameters() where e.tower(of: k) == tower { try p.requiresGrad(trainable) }
}

/// TAO's groups: vision / text / logit × no-decay (ndim < 2 or name with "bn", "ln", "bias",
/// "logit_scale") / decay; vision at vision_lr, text and logit at text_lr.
public func parameterGroups(_ e: CLIPEncoder, optim: OptimConfig) -> [ParamGroup] {
  var groups: [String: ParamGroup] = [:]
  for (name, p) in e.module.namedParameters() where p.requiresGrad {
    let tower = e.tower(of: name).rawValue
    let noDecay = p.rank < 2 || ["bn", "ln", "bias", "logit_scale"].contains { name.contains($0) }
    let key = "\(tower)_\(noDecay ? "no_decay" : "decay")"
    let lr = tower == "vision" ? optim.visionLr : optim.textLr
    groups[key, default: ParamGroup(name: key, params: [], lr: lr, baseLR: lr, weightDecay: noDecay ? 0 : optim.weightDecay)].params.append((name, p))
  }
  return groups.keys.sorted().map { groups[$0]! }
}
