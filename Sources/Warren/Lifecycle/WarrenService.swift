import ServiceLifecycle

/// A ``Worker`` wrapped as a swift-service-lifecycle `Service`: no longer needed, the worker is a `Service` itself.
@available(*, deprecated, message: "Worker is a Service: put the worker itself in the ServiceGroup")
public struct WarrenService: Service {
    public let worker: Worker

    public init(_ worker: Worker) {
        self.worker = worker
    }

    public func run() async throws {
        try await worker.run()
    }
}
