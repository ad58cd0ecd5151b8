import Foundation
import Logging
import ServiceLifecycle
import Synchronization
@_spi(WarrenTransport) import Warren
import WarrenAMQP

/// One `warren.events` message: a batch of job events.
struct EventBatch: WarrenMessage {
    static var messageType: String { "warren.events" }
    var events: [WarrenEvent]

    init(from decoder: any Decoder) throws {
        // Counted before any event is built: an 8 MiB batch of tiny events would otherwise become 100,000 of them.
        var container = try decoder.unkeyedContainer()
        if let count = container.count, count > LedgerBounds.eventsPerBatch {
            throw DecodingError.dataCorrupted(
                .init(
                    codingPath: [],
                    debugDescription: "a batch holds at most \(LedgerBounds.eventsPerBatch) events; this one \(count)"))
        }
        var events: [WarrenEvent] = []
        while !container.isAtEnd {
            guard events.count < LedgerBounds.eventsPerBatch else {
                throw DecodingError.dataCorrupted(
                    .init(
                        codingPath: [], debugDescription: "a batch holds at most \(LedgerBounds.eventsPerBatch) events")
                )
            }
            events.append(try container.decode(WarrenEvent.self))
        }
        self.events = events
        if let other = events.first(where: { $0.schema != 1 }) {
            throw DecodingError.dataCorrupted(
                .init(codingPath: [], debugDescription: "unknown event schema \(other.schema)"))
        }
    }

    func encode(to encoder: any Encoder) throws { try events.encode(to: encoder) }
}

/// Records the job events of every worker (``WarrenEventPublisher``) in a store: declares its durable queue (`warren.ledger`)
/// bound to the topic exchange `warren.events`, consumes it with a ``Worker``, and writes the batches in flight
/// together, in one transaction (a group commit); a batch is acked only after the store committed it, so a ledger that stops or crashes loses nothing
/// (the broker redelivers what was not acked). Several ledgers on one PostgreSQL share the queue.
///
/// A batch the store cannot take is retried through Warren's delay queues; one that cannot be decoded, or holds more
/// than ``LedgerBounds/eventsPerBatch`` events or ``LedgerBounds/batchBytes`` bytes, goes to the ledger queue's dead
/// letters with the reason. Within a batch, what exceeds a bound is cut or skipped (``LedgerBounds``) and the rest is
/// recorded. A `Service`: run it in a `ServiceGroup`, or embed it in a host.
public final class Ledger: Service, Sendable {
    public let transport: RabbitMQTransport
    public let store: any LedgerStore
    public let queue: String
    public let exchange: String
    /// What the ledger keeps, pruned in the background while it runs.
    public let retention: RetentionPolicy
    private let worker: Worker
    private let bind: (exchange: String, key: String)
    private let logger: Logger
    private let pruningElection = Mutex<LeaderElection?>(nil)

    /// - Parameters:
    ///   - queue: the ledger's queue; every ledger process of one store uses the same.
    ///   - bindingKey: which events to take (`#`: all; `emails.*`: one queue's).
    ///   - prefetch: batches in flight (each up to 200 events); those that arrive while a transaction commits are
    ///     written together in the next.
    ///   - retention: how long jobs are kept, and how many (``RetentionPolicy``); ``RetentionPolicy/keepEverything``
    ///     never prunes.
    public init(
        transport: RabbitMQTransport, store: any LedgerStore, queue: String = "warren.ledger",
        exchange: String = "warren.events",
        bindingKey: String = "#", prefetch: UInt16 = 20, retention: RetentionPolicy = RetentionPolicy(),
        logger: Logger = Logger(label: "warren.ledger")
    ) {
        self.transport = transport
        self.store = store
        self.retention = retention
        self.logger = logger
        self.queue = queue
        self.exchange = exchange
        // Every batch in flight has a handler waiting for its commit; the group commit writes them together.
        let commits = GroupCommit(store: store, queue: queue)
        let registration = HandlerRegistration(
            EventBatch.self, queue: queue,
            options: HandlerOptions(
                prefetch: prefetch, maxConcurrentHandlers: Int(max(1, prefetch)),
                retry: RetryPolicy(maxAttempts: 10, backoff: .explicit([.seconds(1), .seconds(5), .seconds(30)])),
                timeout: .seconds(60))
        ) { batch, _ in
            try await commits.record(batch.events)
        }
        worker = Worker(
            transport: transport, registrations: [registration],
            configuration: WorkerConfiguration(maximumMessageBytes: LedgerBounds.batchBytes, tracing: .disabled),
            logger: logger)
        bind = (exchange, bindingKey)
    }

    /// Migrates the store, declares and binds the queue, then records events until the `ServiceGroup` shuts down
    /// gracefully (what was received is finished or requeued, as a ``Worker`` does), pruning what ``retention`` no
    /// longer keeps every ``RetentionPolicy/interval`` (a failed pruning is logged and tried again next time).
    ///
    /// Of all the ledgers on one store, one prunes: the leader of the election `ledger-prune.<store identity>` on the
    /// broker (``pruning``), so that ledgers on different stores each prune their own and those on one store do not
    /// all delete the same rows.
    /// - Throws: the store's migration error; the worker's errors (see ``Worker/run()``).
    public func run() async throws {
        try await store.migrate()
        try await declare()
        let election: LeaderElection? =
            retention == .keepEverything
            ? nil
            : try LeaderElection(
                work: "ledger-prune", scope: try await store.identity(), transport: transport, logger: logger
            ) { [self] _ in await pruneUntilCancelled() }
        pruningElection.withLock { $0 = election }
        try await withThrowingTaskGroup(of: Bool.self) { group in
            group.addTask {
                try await self.worker.run()
                return true
            }
            // The election ends first on a graceful shutdown (it resigns at once), and may fail (a transport that holds
            // no elections: it logs why); either way the worker finishes its drain, and its end ends the ledger.
            if let election {
                group.addTask {
                    try? await election.run()
                    return false
                }
            }
            while let workerEnded = try await group.next() {
                if workerEnded { break }
            }
            group.cancelAll()
        }
    }

    /// The election among the ledgers on this store for the pruning, once ``run()`` started it; `nil` before, and for
    /// a ledger that keeps everything. Its ``LeaderElection/status`` is what a readiness report lists.
    public var pruning: LeaderElection? { pruningElection.withLock { $0 } }

    /// Prunes once now: what ``retention`` no longer keeps at this moment.
    /// - Throws: the store's error.
    @discardableResult
    public func prune() async throws -> PruneResult {
        try await store.prune(retention, nowMs: Int64(Date().timeIntervalSince1970 * 1000))
    }

    private func pruneUntilCancelled() async {
        while !Task.isCancelled {
            do {
                let pruned = try await prune()
                if pruned.jobs > 0 || pruned.auditEntries > 0 {
                    logger.info(
                        "pruned the ledger",
                        metadata: [
                            "jobs": "\(pruned.jobs)", "events": "\(pruned.events)",
                            "audit_entries": "\(pruned.auditEntries)",
                        ])
                }
            } catch is CancellationError {
                return
            } catch {
                logger.warning("pruning the ledger failed; trying again later", metadata: ["error": "\(error)"])
            }
            try? await Task.sleep(for: retention.interval)
        }
    }

    /// Declares the exchange, the ledger's queue (with Warren's topology) and the binding between them.
    public func declare() async throws {
        try await transport.start()
        try await transport.declareTopicExchange(bind.exchange)
        try await transport.prepare(queue: queue, delays: [.seconds(1), .seconds(5), .seconds(30)])
        guard let connection = transport.connection else {
            throw WarrenError(.notConsuming, "the ledger's transport is not connected")
        }
        try await claimQueue(on: connection)
        let channel = try await connection.openChannel()
        try await channel.queueBind(queue, exchange: bind.exchange, routingKey: bind.key)
        try? await channel.close()
    }

    /// The queue that says which store the ledger's queue is consumed for: one message, the store's identity
    /// (``LedgerStore/identity()``).
    public var storeQueue: String { "\(queue).store" }

    /// Makes sure the queue is consumed for this ledger's store only: ledgers of one store (processes on one
    /// PostgreSQL) share it and split the events; while a ledger of another store consumes it, this one would take half
    /// of the events into the wrong store, so it refuses to start instead. A queue nobody consumes now is taken over
    /// (its store was replaced or retired): what waits in it is recorded in this store.
    private func claimQueue(on connection: AMQPConnection) async throws {
        let identity = try await store.identity()
        let channel = try await connection.openChannel()
        _ = try await channel.queueDeclare(storeQueue, durable: true, arguments: ["x-max-length": .int32(1)])
        let consumers = try await channel.queueStatus(queue).consumerCount
        if let held = try await channel.get(queue: storeQueue) {
            let owner = String(decoding: held.delivery.body, as: UTF8.self)
            guard owner != identity else {
                try? await channel.close()  // unacknowledged: the identity stays in its queue
                return
            }
            guard consumers == 0 else {
                try? await channel.close()
                throw WarrenError(
                    .invalidConfiguration,
                    "the ledger queue '\(queue)' is consumed right now for another store: give this ledger a queue of its own "
                        + "(warren-dashboard --ledger-queue \(queue).<name>), or point it at that store")
            }
            try held.delivery.ack()
            logger.notice(
                "taking over a ledger queue last consumed for another store; what waits in it is recorded in this one",
                metadata: ["queue": "\(queue)"])
        }
        try await channel.enableConfirms()
        try await channel.publish(
            Array(identity.utf8), routingKey: storeQueue, mandatory: true,
            properties: AMQPProperties(
                contentType: "text/plain", deliveryMode: .persistent, type: "warren.ledger.store"))
        try? await channel.close()
    }

    /// Whether the ledger consumes its queue (see ``Worker/health``).
    public var health: WorkerHealth { worker.health }

    /// The worker that consumes the ledger's queue: for a host's liveness probe (``Worker/liveness``) and health
    /// endpoints; run the ledger, not this worker.
    public var consumer: Worker { worker }

    /// Returns once the ledger consumes its queue.
    public func waitUntilConsuming(timeout: Duration = .seconds(60)) async throws {
        try await worker.waitUntilConsuming(timeout: timeout)
    }

    /// Stops recording: what was received is finished or requeued.
    public func shutdown() { worker.shutdown() }
}
