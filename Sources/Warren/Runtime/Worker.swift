import Foundation
import Logging
import WarrenAMQP

/// Consumes the queues of its registrations and settles every delivery: ack on success, a delayed retry through a
/// delay queue on a transient failure, the dead letters on a permanent one.
///
/// Nothing is settled before its copy is safe: a retry or dead-letter copy is published and confirmed by the
/// transport first, and only then is the original acked. If the copy cannot be confirmed, the original is requeued.
///
/// ```swift
/// let transport = RabbitMQTransport(endpoints: [endpoint])
/// let worker = Worker(transport: transport, registrations: [
///     HandlerRegistration(WelcomeEmail.self, queue: "emails") { email, context in try await send(email) },
/// ])
/// try await worker.run()   // until shutdown() or cancellation
/// ```
public final class Worker: Sendable {
    public let transport: any WarrenTransport
    public let registrations: [HandlerRegistration]
    public let configuration: WorkerConfiguration
    let logger: Logger
    let observer: (@Sendable (SettlementEvent) -> Void)?
    let shutdownSignal = ShutdownSignal()

    /// - Parameter observer: called after every settled delivery (for metrics or tests); must return quickly.
    public init(
        transport: any WarrenTransport, registrations: [HandlerRegistration],
        configuration: WorkerConfiguration = WorkerConfiguration(), logger: Logger = Logger(label: "warren"),
        observer: (@Sendable (SettlementEvent) -> Void)? = nil
    ) {
        self.transport = transport
        self.registrations = registrations
        self.configuration = configuration
        self.logger = logger
        self.observer = observer
    }

    /// Starts the transport, declares the topology, then consumes until ``shutdown()`` or until the calling task is
    /// cancelled.
    ///
    /// After ``shutdown()``: consumers stop, deliveries received but not started are requeued, handlers already
    /// running may finish within ``WorkerConfiguration/gracePeriod``, after which they are cancelled and their
    /// messages requeued; then the transport closes and `run()` returns. Cancelling the calling task does the same
    /// without the grace period.
    /// - Throws: ``WarrenError`` (``WarrenError/Code/topologyConflict``, ``WarrenError/Code/nothingToConsume``) or
    ///   the transport's error when it cannot start or its connection fails.
    public func run() async throws {
        let queues = Dictionary(grouping: registrations.filter(\.options.enabled), by: \.queue)
        guard !queues.isEmpty else { throw WarrenError(.nothingToConsume, "no enabled handler registration") }
        try await transport.start()
        do {
            for (queue, registrations) in queues.sorted(by: { $0.key < $1.key }) {
                try await transport.prepare(queue: queue, delays: Self.delays(of: registrations))
            }
            try await withThrowingTaskGroup(of: Void.self) { group in
                for (queue, registrations) in queues {
                    let runner = QueueRunner(queue: queue, registrations: registrations, worker: self)
                    group.addTask { try await runner.run() }
                }
                try await group.waitForAll()
            }
        } catch {
            await transport.close()
            if error is CancellationError { return }
            throw error
        }
        await transport.close()
        logger.info("worker stopped")
    }

    /// Begins a graceful shutdown (see ``run()``). Returns at once; `run()` returns when it is done.
    public func shutdown() {
        logger.info("graceful shutdown requested", metadata: ["grace_period": "\(configuration.gracePeriod)"])
        shutdownSignal.trigger()
    }

    /// Every delay the registrations' policies can produce, so their delay queues exist before the first failure.
    static func delays(of registrations: [HandlerRegistration]) -> Set<Duration> {
        var delays = Set<Duration>()
        for registration in registrations {
            let policy = registration.options.retry
            guard policy.maxAttempts > 1 else { continue }
            for attempt in 1..<policy.maxAttempts {
                if case .exponential(_, _, _, let jitter) = policy.backoff, jitter > 0 {
                    for step in 0...RetryPolicy.Backoff.jitterSteps {
                        let sample = (Double(step) + 0.5) / Double(RetryPolicy.Backoff.jitterSteps + 1)
                        delays.insert(policy.delay(afterAttempt: attempt, jitterSample: sample))
                    }
                } else {
                    delays.insert(policy.delay(afterAttempt: attempt))
                }
            }
        }
        return delays
    }
}
