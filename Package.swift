// swift-tools-version:6.0
// ClipKit: CLIP-family training, evaluation, embedding and export on libtorch, driven by TAO specs.
import Foundation
import PackageDescription

// libtorch 2.11.0 (from the PyPI wheel; scripts/setup.sh installs it). LIBTORCH_DIR overrides.
let packageDir = Context.packageDirectory
let libtorch = Context.environment["LIBTORCH_DIR"] ?? "\(packageDir)/.deps/libtorch"

let torchCxx: [CXXSetting] = [
  .unsafeFlags([
    "-I\(libtorch)/include",
    "-I\(libtorch)/include/torch/csrc/api/include",
    "-D_GLIBCXX_USE_CXX11_ABI=1",
    "-Wno-deprecated-declarations",
    "-O2",
  ])
]
// Only torch_cpu and c10 are linked, so the binary runs on CPU-only machines; libtorch_cuda.so is
// loaded at run time where present. $ORIGIN rpaths let a deployed binary find the .so files
// beside it (or in lib/ beside it).
let torchLink: [LinkerSetting] = [
  .unsafeFlags([
    "-L\(libtorch)/lib",
    "-Xlinker", "-rpath", "-Xlinker", "\(libtorch)/lib",
    "-Xlinker", "-rpath", "-Xlinker", "$ORIGIN",
    "-Xlinker", "-rpath", "-Xlinker", "$ORIGIN/lib",
    "-Xlinker", "--no-as-needed",
  ]),
  .linkedLibrary("torch_cpu"),
  .linkedLibrary("c10"),
  .linkedLibrary("stdc++"),
]

// The pixel loops use SIMD integer multiplies; Nehalem-level x86 (SSE4.1/4.2, every x86 server since 2009)
// has them as single instructions where the baseline target emulates them.
#if arch(x86_64)
let pixelLoops: [SwiftSetting] = [.unsafeFlags(["-target-cpu", "nehalem"])]
#else
let pixelLoops: [SwiftSetting] = []
#endif

let package = Package(
  name: "ClipKit",
  platforms: [.macOS(.v14)],
  products: [
    .executable(name: "clipkit", targets: ["clipkit"]),
    .library(name: "Torch", targets: ["Torch"]),
    .library(name: "Spec", targets: ["Spec"]),
    .library(name: "Tokenizers", targets: ["Tokenizers"]),
    .library(name: "Imaging", targets: ["Imaging"]),
    .library(name: "Jobs", targets: ["Jobs"]),
  ],
  dependencies: [
    .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
    .package(url: "https://github.com/weichsel/ZIPFoundation", from: "0.9.20"),
    .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
    // Remote shards: SigV4 (HMAC/SHA-256) and streamed HTTP(S) with ranged retries.
    .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
    .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
    .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
    // clipkit serve: the NV-CLIP-compatible embedding server.
    .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
  ],
  targets: [
    .target(name: "CTorch", cxxSettings: torchCxx, linkerSettings: torchLink),
    .target(name: "CCodecs", linkerSettings: [.linkedLibrary("png16")]),
    .target(name: "CH5", dependencies: ["CHDF5"]),
    .systemLibrary(name: "CTurboJPEG", pkgConfig: "libturbojpeg",
                   providers: [.apt(["libturbojpeg0-dev"])]),
    .systemLibrary(name: "CPNG", pkgConfig: "libpng", providers: [.apt(["libpng-dev"])]),
    .systemLibrary(name: "CWebP", pkgConfig: "libwebp", providers: [.apt(["libwebp-dev"])]),
    .systemLibrary(name: "CGzip", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
    .systemLibrary(name: "CHDF5", pkgConfig: "hdf5", providers: [.apt(["libhdf5-dev"])]),

    .target(name: "Paths"),
    .target(name: "Torch", dependencies: ["CTorch", "Paths", .product(name: "ZIPFoundation", package: "ZIPFoundation")]),
    .target(name: "Spec", dependencies: [.product(name: "Yams", package: "Yams")]),
    .target(name: "Tokenizers", dependencies: ["CGzip"]),
    .target(name: "Imaging", dependencies: ["CCodecs", "CTurboJPEG", "CWebP"], swiftSettings: pixelLoops),
    .target(name: "Export", dependencies: ["Torch", "Paths", .product(name: "SwiftProtobuf", package: "swift-protobuf")],
            exclude: ["Proto/onnx-subset.proto"]),
    .target(name: "Models", dependencies: ["Torch", "Tokenizers", "Imaging", "Export", "Deploy"]),
    .target(name: "Retrieval", dependencies: ["CH5", "Paths"]),
    .target(name: "Training", dependencies: ["Torch"]),
    .target(name: "Data", dependencies: ["Paths"]),
    // s3:// and http(s):// shards: the HTTP client and the SigV4 signer, kept out of Data (and so
    // out of the fuzzing harness build).
    .target(name: "Remote", dependencies: ["Data", .product(name: "Crypto", package: "swift-crypto"),
                                           .product(name: "NIOPosix", package: "swift-nio"), .product(name: "NIOHTTP1", package: "swift-nio"),
                                           .product(name: "NIOSSL", package: "swift-nio-ssl")]),
    .target(name: "Deploy", dependencies: ["Paths"]),
    .target(name: "Jobs", dependencies: ["Torch", "Spec", "Imaging", "Tokenizers", "Models", "Retrieval", "Training", "Data", "Remote", "Deploy", "Export", "Paths"]),
    // NIM's request schema, free of the server framework (the fuzzer drives it).
    .target(name: "ServeAPI"),
    .target(name: "Server", dependencies: ["Jobs", "Imaging", "Models", "Retrieval", "ServeAPI", .product(name: "Hummingbird", package: "hummingbird")]),
    .target(name: "FuzzTargets", dependencies: ["Data", "Export", "Imaging", "ServeAPI", "Spec", "Tokenizers", "Torch"]),
    .executableTarget(name: "clipkit-fuzz", dependencies: ["FuzzTargets"]),
    .executableTarget(
      name: "clipkit",
      dependencies: [
        "Jobs", "Torch", "Spec", "Imaging", "Tokenizers", "Models", "Retrieval", "Training", "Data", "Remote", "Deploy", "Export", "Paths",
        "Server", .product(name: "ArgumentParser", package: "swift-argument-parser"),
        .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
        .product(name: "NIOHTTP1", package: "swift-nio"),
      ]),

    .testTarget(name: "TorchTests", dependencies: ["Torch"], resources: [.copy("Fixtures")]),
    .testTarget(name: "SpecTests", dependencies: ["Spec"], resources: [.copy("Fixtures")]),
    .testTarget(name: "TrainingTests", dependencies: ["Training", "Torch"], resources: [.copy("Fixtures")]),
    .testTarget(name: "DeployTests", dependencies: ["Deploy"]),
    .testTarget(name: "DataTests", dependencies: ["Data", "Remote", "Paths", .product(name: "NIOEmbedded", package: "swift-nio"),
                                                  .product(name: "NIOPosix", package: "swift-nio")],
                resources: [.copy("Fixtures")]),
    .testTarget(name: "RetrievalTests", dependencies: ["Retrieval"], resources: [.copy("Fixtures")]),
    .testTarget(name: "ModelTests", dependencies: ["Models"], resources: [.copy("Fixtures")]),
    .testTarget(name: "ImagingTests", dependencies: ["Imaging", "CGzip"], resources: [.copy("Fixtures")]),
    .testTarget(name: "TokenizerTests", dependencies: ["Tokenizers"], resources: [.copy("Fixtures")]),
    .testTarget(name: "SystemLibraryTests",
                dependencies: ["CTurboJPEG", "CPNG", "CWebP", "CHDF5"]),
    .testTarget(name: "FuzzTests", dependencies: ["FuzzTargets"], resources: [.copy("Regressions")]),
    .testTarget(name: "ServerTests", dependencies: ["Server", "Jobs", "Imaging", "Retrieval", "Spec", .product(name: "HummingbirdTesting", package: "hummingbird")]),
    .testTarget(name: "CLITests", dependencies: ["clipkit", "Jobs", "Retrieval", "Torch", "Export", "Models"]),
  ],
  cxxLanguageStandard: .cxx17
)
