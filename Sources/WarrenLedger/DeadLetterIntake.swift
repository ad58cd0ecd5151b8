import Foundation
import Logging
import ServiceLifecycle
import Synchronization
@_spi(WarrenTransport) import Warren
import WarrenAMQP

/// Takes the dead letters of work queues into a ledger's store, as NServiceBus's ServiceControl ingests its error
/// queue: each message of a dead-letter queue is committed to the store whole (body, properties, typed headers) and
/// only then acked off its queue, so the store becomes the dead letters' record — searchable, grouped, replayed and
/// purged from there (``DeadLetterOperationRunner``) — and nothing is lost if the process dies in between (the broker
/// redelivers, the store takes it once).
///
/// The queues: those named, and, with `discover`, every queue the ledger has recorded jobs of that a Warren worker
/// declared (it holds Warren's topology manifest: events, which anyone may publish, cannot name a queue to drain),
/// looked up again every `rediscoverEvery` (a queue whose dead-letter queue does not exist yet is tried again then). Several intakes may
/// consume the same queues (ledgers on one PostgreSQL): each message is committed by one of them.
///
/// A `Service`: run it in a `ServiceGroup` next to a ``Ledger`` (`warren-dashboard` runs both); it stops consuming on
/// graceful shutdown, what it received and did not commit going back to its queue.
public final class DeadLetterIntake: Service, Sendable {
    public let transport: RabbitMQTransport
    public let store: any LedgerStore
    public let queues: [String]
    public let discover: Bool
    public let rediscoverEvery: Duration
    public let prefetch: UInt16
    private let commits: GroupCommit<IngestedDeadLetter>
    /// The work queues whose dead letters a task of ``run()`` takes now.
    private let consuming = Mutex<Set<String>>([])
    /// Discovered queues without Warren's manifest, and when that was found.
    private let notDeclared = Mutex<[String: ContinuousClock.Instant]>([:])
    private let logger: Logger

    /// - Parameters:
    ///   - queues: work queues whose dead letters to take (their dead-letter queues are `<queue>.dead-letters`).
    ///   - discover: also the queues the store has jobs of (``LedgerStore/queues()``).
    ///   - prefetch: dead letters in flight per queue; those that arrive while a transaction commits are written
    ///     together in the next.
    public init(
        transport: RabbitMQTransport, store: any LedgerStore, queues: [String] = [], discover: Bool = true,
        rediscoverEvery: Duration = .seconds(5), prefetch: UInt16 = 100,
        logger: Logger = Logger(label: "warren.ledger.dead-letters")
    ) {
        self.transport = transport
        self.store = store
        self.queues = queues
        self.discover = discover
        self.rediscoverEvery = rediscoverEvery
        self.prefetch = max(1, prefetch)
        self.logger = logger
        commits = GroupCommit { letters in try await store.take(letters) }
    }

    /// Consumes the dead-letter queues until the task is cancelled or the `ServiceGroup` shuts down.
    /// - Throws: the store's migration error.
    public func run() async throws {
        try await store.migrate()
        await cancelWhenGracefulShutdown {
            await withDiscardingTaskGroup { group in
                while !Task.isCancelled {
                    var names = Set(self.queues)
                    if self.discover {
                        // Not Warren's own queues (the ledger's: its dead letters are event batches it could not take).
                        do {
                            let found = Set(try await self.store.queues().filter { !$0.hasPrefix("warren.") })
                            let unknown = found.subtracting(self.consuming.withLock { $0 }).subtracting(names)
                            names.formUnion(found.subtracting(unknown))
                            names.formUnion(await self.declaredByWarren(unknown))
                        } catch {
                            self.logger.warning("could not list the ledger's queues", metadata: ["error": "\(error)"])
                        }
                    }
                    let new = self.consuming.withLock { consuming in
                        let new = names.subtracting(consuming)
                        consuming.formUnion(new)
                        return new
                    }
                    for queue in new {
                        group.addTask {
                            await self.consume(queue)
                            _ = self.consuming.withLock { $0.remove(queue) }
                        }
                    }
                    try? await Task.sleep(for: self.rediscoverEvery)
                }
            }
        }
    }

    /// The queues of `names` that a Warren worker declared (``WarrenTopology/hasManifest(on:)``): a queue name in the
    /// ledger comes from events, which anyone may publish, and must not make the intake drain any queue it likes. A name
    /// found not to be one is not asked about again for ``recheckAfter``.
    private func declaredByWarren(_ names: Set<String>) async -> Set<String> {
        let now = ContinuousClock.now
        let candidates = notDeclared.withLock { notDeclared in
            notDeclared = notDeclared.filter { now - $0.value < Self.recheckAfter }
            if notDeclared.count > 10_000 { notDeclared = [:] }
            // A bounded number per discovery: a publisher naming a million queues must not keep this loop busy.
            return names.filter { notDeclared[$0] == nil }.sorted().prefix(Self.checksPerDiscovery)
        }
        guard !candidates.isEmpty, (try? await transport.start()) != nil, let connection = transport.connection else {
            return []
        }
        var declared: Set<String> = []
        for name in candidates {
            do {
                if try await WarrenTopology(queue: name).hasManifest(on: connection) {
                    declared.insert(name)
                } else {
                    notDeclared.withLock { $0[name] = now }
                    logger.debug(
                        "not taking the dead letters of a queue Warren did not declare", metadata: ["queue": "\(name)"])
                }
            } catch {
                return declared  // the connection failed: the rest are asked about next time
            }
        }
        return declared
    }

    /// Queues asked about per discovery, at most.
    static let checksPerDiscovery = 50

    /// How long a discovered queue found without Warren's manifest is left alone.
    static let recheckAfter = Duration.seconds(300)

    /// Takes `queue`'s dead letters until cancelled; after a lost connection, again once the transport is back.
    /// Returns when the dead-letter queue does not exist (the next discovery starts again).
    private func consume(_ queue: String) async {
        let deadLetterQueue = WarrenTopology(queue: queue).deadLetterQueue
        var backoff = Duration.milliseconds(500)
        while !Task.isCancelled {
            do {
                try await transport.start()
                let consumer = try await transport.consume(queue: deadLetterQueue, prefetch: prefetch)
                logger.debug("taking dead letters", metadata: ["queue": "\(deadLetterQueue)"])
                backoff = .milliseconds(500)
                do {
                    try await withThrowingDiscardingTaskGroup { group in
                        for try await delivery in consumer {
                            group.addTask { await self.take(delivery, queue: queue) }
                        }
                    }
                } catch {
                    // Its channel and what it received and did not commit go back, whatever ended it.
                    await consumer.close()
                    throw error
                }
                await consumer.close()
                if Task.isCancelled { return }
            } catch is CancellationError {
                return
            } catch let error as AMQPError where error.replyCode == 404 {
                logger.debug("no dead-letter queue yet", metadata: ["queue": "\(deadLetterQueue)"])
                return
            } catch  where transport.isRecoverable(error) {
                logger.debug(
                    "dead-letter intake interrupted", metadata: ["queue": "\(deadLetterQueue)", "error": "\(error)"])
                try? await Task.sleep(for: backoff)
                backoff = min(backoff * 2, .seconds(15))
            } catch {
                logger.warning(
                    "not taking dead letters", metadata: ["queue": "\(deadLetterQueue)", "error": "\(error)"])
                return
            }
        }
    }

    private func take(_ delivery: TransportDelivery, queue: String) async {
        let letter = IngestedDeadLetter(
            message: StoredMessage(body: delivery.body, properties: delivery.properties), queue: queue,
            receivedAtMs: Int64((Date().timeIntervalSince1970 * 1000).rounded()))
        do {
            try await commits.record([letter])
            try delivery.ack()
        } catch {
            // Not committed: back to its queue after a pause, taken again later.
            logger.warning(
                "could not take a dead letter into the ledger; it stays in its queue",
                metadata: ["queue": "\(queue)", "message_id": "\(letter.messageID)", "error": "\(error)"])
            try? await Task.sleep(for: .seconds(1))
            try? delivery.requeue()
        }
    }
}
