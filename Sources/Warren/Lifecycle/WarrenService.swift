import ServiceLifecycle

/// A ``Worker`` as a swift-service-lifecycle `Service`.
///
/// Put it in a `ServiceGroup` with `gracefulShutdownSignals: [.sigterm, .sigint]`: on either signal the worker stops
/// consuming, lets running handlers finish within its grace period, requeues what it had received but not started,
/// and closes; `run()` then returns and the group (and process) can exit cleanly.
///
/// ```swift
/// let group = ServiceGroup(configuration: .init(services: [WarrenService(worker)],
///                                               gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
/// try await group.run()
/// ```
public struct WarrenService: Service {
    public let worker: Worker

    public init(_ worker: Worker) {
        self.worker = worker
    }

    public func run() async throws {
        try await withGracefulShutdownHandler {
            try await worker.run()
        } onGracefulShutdown: {
            worker.shutdown()
        }
    }
}
