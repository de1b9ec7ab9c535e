import Foundation
import Hummingbird
import Jobs

/// Request counts and latencies for `/v1/metrics` (Prometheus text format), per route and status.
public final class ServerMetrics: @unchecked Sendable {
  static let routes: Set<String> = ["/v1/embeddings", "/v1/models", "/v1/health/live", "/v1/health/ready", "/v1/metrics", "/", "/v1/search"]
  private let lock = NSLock()
  private var requests: [String: Int] = [:]  // "route|code"
  private var latency: [String: Histogram] = [:]

  public init() {}

  func record(path: String, status: Int, seconds: Double) {
    // Unknown paths share one label: a scanner must not grow the label set without bound.
    let route = Self.routes.contains(path) ? path : "other"
    let h = lock.withLock { () -> Histogram in
      requests["\(route)|\(status)", default: 0] += 1
      if let h = latency[route] { return h }
      let h = Histogram(bounds: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10])
      latency[route] = h
      return h
    }
    h.observe(seconds)
  }

  func render(_ service: EmbeddingService) -> String {
    var s = "# HELP clipkit_requests_total HTTP requests by route and status code.\n# TYPE clipkit_requests_total counter\n"
    let (counts, hists) = lock.withLock { (requests, latency) }
    for key in counts.keys.sorted() {
      let parts = key.split(separator: "|")
      s += "clipkit_requests_total{route=\"\(parts[0])\",code=\"\(parts[1])\"} \(counts[key]!)\n"
    }
    s += "# HELP clipkit_request_duration_seconds Time to answer a request.\n# TYPE clipkit_request_duration_seconds histogram\n"
    for route in hists.keys.sorted() { s += hists[route]!.render("clipkit_request_duration_seconds", labels: "route=\"\(route)\"") }
    s += "# HELP clipkit_batch_size Items per model batch.\n# TYPE clipkit_batch_size histogram\n"
    s += service.batchSizes.render("clipkit_batch_size")
    s += "# HELP clipkit_queue_items Items waiting for a batch.\n# TYPE clipkit_queue_items gauge\nclipkit_queue_items \(service.queued)\n"
    s += "# HELP clipkit_model_ready Whether the model is loaded.\n# TYPE clipkit_model_ready gauge\nclipkit_model_ready \(service.isReady ? 1 : 0)\n"
    return s
  }
}

struct MetricsMiddleware<Context: RequestContext>: RouterMiddleware {
  let metrics: ServerMetrics
  func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
    let start = DispatchTime.now().uptimeNanoseconds
    let seconds = { Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 }
    do {
      let r = try await next(request, context)
      metrics.record(path: request.uri.path, status: r.status.code, seconds: seconds())
      return r
    } catch let e as HTTPResponseError {
      metrics.record(path: request.uri.path, status: e.status.code, seconds: seconds())
      throw e
    } catch {
      metrics.record(path: request.uri.path, status: 500, seconds: seconds())
      throw error
    }
  }
}
