import Foundation
import Logging
import Synchronization
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
    private let health = Mutex(Health())

    private struct Health {
        var consuming = false
        var problem: String?
    }

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
        var failedAttempts = 0
        var outage: ContinuousClock.Instant?
        while true {
            do {
                try await runOnce(queues) {
                    if let started = outage {
                        logger.notice("connection recovered; consuming again", metadata: ["outage": "\(ContinuousClock.now - started)"])
                        outage = nil
                    }
                    failedAttempts = 0
                }
                setHealth(consuming: false, problem: nil)
                await transport.close()
                logger.info("worker stopped")
                return
            } catch {
                setHealth(consuming: false, problem: "\(error)")
                if error is CancellationError || Task.isCancelled || shutdownSignal.isTriggered {
                    await transport.close()
                    return
                }
                failedAttempts += 1
                guard Self.isRecoverable(error), failedAttempts <= configuration.recovery.maximumAttempts ?? .max else {
                    await transport.close()
                    throw error
                }
                // The transport stays open: `start()` reconnects when the connection is gone, and keeps it when only
                // a channel was (a consumer cancelled by the broker), so publishers sharing it are not disturbed.
                let delay = configuration.recovery.delay(beforeAttempt: failedAttempts, sample: Double.random(in: 0..<1))
                if outage == nil {
                    outage = ContinuousClock.now
                    // Logged once per outage; the attempts that follow log at debug.
                    logger.error("connection lost; reconnecting", metadata: ["error": "\(error)", "retry_in": "\(delay)"])
                } else {
                    logger.debug("reconnection failed", metadata: ["error": "\(error)", "attempt": "\(failedAttempts)", "retry_in": "\(delay)"])
                }
                await sleepUnlessShutdown(delay)
                if shutdownSignal.isTriggered || Task.isCancelled { return }
            }
        }
    }

    /// Connects, declares the topology and consumes until a shutdown (returns) or a failure (throws).
    private func runOnce(_ queues: [String: [HandlerRegistration]], connected: () -> Void) async throws {
        try await transport.start()
        for (queue, registrations) in queues.sorted(by: { $0.key < $1.key }) {
            try await transport.prepare(queue: queue, delays: Self.delays(of: registrations))
        }
        var runners = queues.map { QueueRunner(queue: $0.key, registrations: $0.value, worker: self) }
        if configuration.redeliveryLimit != nil {
            runners += queues.map { QueueRunner(queue: $0.key, registrations: $0.value, worker: self, isolated: true) }
        }
        var consumers: [(QueueRunner, TransportConsumer)] = []
        for runner in runners { consumers.append((runner, try await runner.startConsuming())) }
        let started = consumers
        setHealth(consuming: true, problem: nil)
        connected()
        do {
            try await withThrowingTaskGroup(of: Bool.self) { group in
                for (runner, consumer) in started {
                    group.addTask {
                        try await runner.run(consumer)
                        return true
                    }
                }
                group.addTask {
                    try await self.enforceGracePeriod(on: started.map(\.0))
                    return false
                }
                // Not `waitForAll()`: it would wait for every consumer before reporting the one that failed. The first
                // failure leaves the group, which cancels the other consumers, and the worker recovers them all.
                var running = started.count
                while running > 0, let isRunner = try await group.next() {
                    if isRunner { running -= 1 }
                }
                group.cancelAll()
            }
        } catch is GracePeriodExpired {
            // The handlers still running were cancelled and requeued their messages.
        }
    }

    /// After a shutdown, waits for the handlers still running; when the grace period is over first, throws so that
    /// the consumers' group (and with it every running handler) is cancelled.
    private func enforceGracePeriod(on runners: [QueueRunner]) async throws {
        try await shutdownSignal.wait()
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: configuration.gracePeriod)
        for runner in runners where !(await runner.inFlight.waitUntilIdle(timeout: clock.now.duration(to: deadline))) {
            logger.warning(
                "grace period over: cancelling handlers still running",
                metadata: ["queue": "\(runner.source)", "in_flight": "\(runner.inFlight.current)"])
            throw GracePeriodExpired()
        }
        // Idle: the consumers end by themselves once their cancelled consumers are drained.
        try await Task.sleep(for: .seconds(86_400 * 365))
    }

    /// Errors after which reconnecting can help: the connection or a channel went away, or the broker could not be
    /// reached. Configuration mistakes (a topology conflict, bad credentials) are not retried.
    static func isRecoverable(_ error: any Error) -> Bool {
        guard let error = error as? AMQPError else { return false }
        switch error.code {
        case .connectionLost, .connectionClosed, .connectionFailed, .channelClosed, .consumerCancelled, .timeout: return true
        default: return false
        }
    }

    private func sleepUnlessShutdown(_ delay: Duration) async {
        let clock = ContinuousClock()
        let end = clock.now.advanced(by: delay)
        while clock.now < end, !shutdownSignal.isTriggered, !Task.isCancelled {
            try? await Task.sleep(for: min(.milliseconds(100), clock.now.duration(to: end)))
        }
    }

    private func setHealth(consuming: Bool, problem: String?) {
        health.withLock {
            $0.consuming = consuming
            $0.problem = problem
        }
    }

    /// Whether the worker is consuming every one of its queues right now. False while it connects, after a connection
    /// loss until it has recovered, and after it stopped: a health check should report this.
    public var isConsuming: Bool { health.withLock { $0.consuming } }

    /// Why the worker is not consuming, when it is not because of a failure.
    public var healthProblem: String? { health.withLock { $0.problem } }

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
