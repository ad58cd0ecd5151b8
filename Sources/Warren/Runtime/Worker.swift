import Foundation
import Logging
import Synchronization
import WarrenAMQP

/// Consumes the queues of its registrations and settles every delivery: ack on success, a delayed retry through a
/// delay queue on a transient failure, the dead letters on a permanent one.
///
/// Nothing is settled before its copy is safe: a retry or dead-letter copy is published with publisher confirms
/// (and `mandatory`), and only once the broker confirmed it is the original acked. If the copy cannot be confirmed,
/// the original is nacked with requeue, so the broker delivers it again.
///
/// ```swift
/// let worker = Worker(configuration: WorkerConfiguration(endpoints: [endpoint]), registrations: [
///     HandlerRegistration(WelcomeEmail.self, queue: "emails") { email, context in try await send(email) },
/// ])
/// try await worker.run()   // until the surrounding task is cancelled
/// ```
public final class Worker: Sendable {
    public let configuration: WorkerConfiguration
    public let registrations: [HandlerRegistration]
    let logger: Logger

    public init(configuration: WorkerConfiguration, registrations: [HandlerRegistration], logger: Logger = Logger(label: "warren")) {
        self.configuration = configuration
        self.registrations = registrations
        self.logger = logger
    }

    /// Declares the topology, then consumes until the calling task is cancelled. On cancellation it stops
    /// consuming; deliveries whose handler was interrupted are requeued, and prefetched ones return to the queue
    /// when the channel closes.
    /// - Throws: ``WarrenError`` (``WarrenError/Code/topologyConflict`` when existing queues contradict the
    ///   registrations), or `AMQPError` when the broker cannot be reached or the connection is lost.
    public func run() async throws {
        let queues = Dictionary(grouping: registrations.filter(\.options.enabled), by: \.queue)
        guard !queues.isEmpty else { throw WarrenError(.nothingToConsume, "no enabled handler registration") }

        let connection = try await AMQPConnection.connect(
            to: configuration.endpoints, connectionName: configuration.connectionName, logger: logger)
        do {
            let topology = try await TopologyDeclarer(connection: connection, queueType: configuration.queueType)
            for (queue, registrations) in queues {
                try await topology.declare(queue: queue, delays: Self.delays(of: registrations))
            }
            let publisher = try await connection.openChannel()
            try await publisher.enableConfirms()

            try await withThrowingTaskGroup(of: Void.self) { group in
                for (queue, registrations) in queues {
                    let runner = QueueRunner(
                        queue: queue, registrations: registrations, configuration: configuration, topology: topology,
                        publisher: publisher, logger: logger)
                    group.addTask { try await runner.run(on: connection) }
                }
                try await group.waitForAll()
            }
        } catch {
            await connection.close()
            if error is CancellationError { return }
            throw error
        }
        await connection.close()
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

/// Declares work, delay and dead-letter queues, once each, on a channel of its own.
final class TopologyDeclarer: Sendable {
    private let channel: AMQPChannel
    private let queueType: WarrenTopology.QueueType
    private let declared = Mutex<Set<String>>([])

    init(connection: AMQPConnection, queueType: WarrenTopology.QueueType) async throws {
        channel = try await connection.openChannel()
        self.queueType = queueType
        try await channel.exchangeDeclare(WarrenTopology.deadLetterExchange, type: .direct, durable: true)
    }

    func topology(for queue: String) -> WarrenTopology {
        WarrenTopology(queue: queue, queueType: queueType)
    }

    func declare(queue: String, delays: Set<Duration>) async throws {
        let topology = topology(for: queue)
        try await declareQueue(topology.queue, arguments: topology.workQueueArguments)
        try await declareQueue(topology.deadLetterQueue, arguments: topology.workQueueArguments)
        try await channel.queueBind(topology.deadLetterQueue, exchange: WarrenTopology.deadLetterExchange, routingKey: queue)
        for delay in delays.sorted() { try await ensureDelayQueue(queue: queue, delay: delay) }
    }

    /// Declares the delay queue for `delay` unless this process already did.
    func ensureDelayQueue(queue: String, delay: Duration) async throws {
        let topology = topology(for: queue)
        let name = topology.delayQueue(for: delay)
        guard !declared.withLock({ $0.contains(name) }) else { return }
        try await declareQueue(name, arguments: topology.delayQueueArguments(for: delay))
    }

    private func declareQueue(_ name: String, arguments: AMQPTable) async throws {
        do {
            try await channel.queueDeclare(name, durable: true, arguments: arguments)
            declared.withLock { _ = $0.insert(name) }
        } catch let error as AMQPError where error.replyCode == 406 {
            throw WarrenError(
                .topologyConflict,
                "queue '\(name)' exists with other settings than Warren needs (\(arguments)); broker said: \(error.replyText ?? "")")
        }
    }
}
