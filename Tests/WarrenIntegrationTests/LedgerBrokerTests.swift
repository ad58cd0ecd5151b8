import Foundation
import Testing
import WarrenAMQP
import WarrenTestSupport

@_spi(WarrenTransport) @testable import Warren
@testable import WarrenLedger

/// Events → ledger → status through the real broker.
@Suite("Ledger against RabbitMQ", .serialized, .tags(.broker, .postgres), .needs(.broker, .postgres), .deletesItsQueues)
struct LedgerBrokerTests {
    /// Two ledgers on one PostgreSQL database prune it in turn, never both; a ledger on another store prunes its own.
    @Test func oneLedgerPerStorePrunesAndAnotherStoreHasItsOwnPruner() async throws {
        let url = try await TestBroker.url()
        let shared = try await LocalPostgres.shared().newDatabaseURL()
        let exchange = TestBroker.uniqueName("events")
        let ledgerQueue = TestBroker.uniqueName("ledger")
        let stores = [
            try PostgresLedgerStore(url: shared, logger: TestBroker.quietLogger()),
            try PostgresLedgerStore(url: shared, logger: TestBroker.quietLogger()),
            try PostgresLedgerStore(
                url: try await LocalPostgres.shared().newDatabaseURL(), logger: TestBroker.quietLogger()),
        ]
        // A ledger of another store consumes a queue of its own (a shared one it would refuse: ledger.md).
        let queues = [ledgerQueue, ledgerQueue, TestBroker.uniqueName("other-ledger")]
        let ledgers = try zip(stores, queues).map { store, queue in
            Ledger(
                transport: RabbitMQTransport(endpoints: [try AMQPEndpoint(uri: url)], logger: TestBroker.quietLogger()),
                store: store, queue: queue, exchange: exchange,
                retention: RetentionPolicy(succeeded: .seconds(3600), interval: .seconds(1)),
                logger: TestBroker.quietLogger())
        }
        let identities = try await withRunning(stores) {
            try await whileRunning(ledgers.map { ledger in { try await ledger.run() } }) {
                let settled = try await eventually(timeout: .seconds(20)) {
                    ledgers.allSatisfy { $0.pruning?.role == .leader || $0.pruning?.role == .standby }
                        && ledgers.filter { $0.pruning?.role == .leader }.count == 2
                }
                #expect(settled, "\(ledgers.map { String(describing: $0.pruning?.role) })")
                let sharedRoles = ledgers.prefix(2).compactMap { $0.pruning?.role }
                #expect(
                    sharedRoles.sorted { $0.rawValue < $1.rawValue } == [.leader, .standby], "one pruner per store")
                #expect(ledgers[2].pruning?.role == .leader, "a store of its own: its own pruner")
                #expect(ledgers[0].pruning?.election != ledgers[2].pruning?.election)
                let identity = try await stores[0].identity()
                #expect(ledgers[0].pruning?.election == "ledger-prune.\(identity)")
            }
            return [try await stores[0].identity(), try await stores[2].identity()]
        }
        for ledger in ledgers { await ledger.transport.close() }
        for store in stores { try await store.close() }
        try await withConnection { connection in
            let channel = try await connection.openChannel()
            for identity in identities {
                _ = try? await channel.queueDelete(LeadershipNames.electionQueue("ledger-prune.\(identity)"))
            }
        }
    }

    @Test(arguments: StoreKind.allCases)
    func statusFollowsTheJobAndARestartedLedgerLosesNothing(_ kind: StoreKind) async throws {
        try await withCleanups { cleanups in
            _ = testMetrics  // the process's metrics, bootstrapped before the ledger makes its gauge
            let url = try await TestBroker.url()
            let queue = TestBroker.uniqueName()
            let exchange = TestBroker.uniqueName("events")
            let ledgerQueue = TestBroker.uniqueName("ledger")
            try await withStore(kind) { store in
                let transport = RabbitMQTransport(
                    endpoints: [try AMQPEndpoint(uri: url)], logger: TestBroker.quietLogger())
                try await transport.start()
                cleanups.add { await transport.close() }
                let events = WarrenEventPublisher(
                    transport: transport, options: EventOptions(exchange: exchange, flushInterval: .milliseconds(20)),
                    logger: TestBroker.quietLogger())

                func startLedger() async throws -> (Ledger, Task<Void, any Error>) {
                    let ledgerTransport = RabbitMQTransport(
                        endpoints: [try AMQPEndpoint(uri: url)], logger: TestBroker.quietLogger())
                    let ledger = Ledger(
                        transport: ledgerTransport, store: store, queue: ledgerQueue, exchange: exchange,
                        logger: TestBroker.quietLogger())
                    let running = Task { try await ledger.run() }
                    try await ledger.waitUntilConsuming(timeout: .seconds(30))
                    return (ledger, running)
                }
                var (ledger, running) = try await startLedger()

                let release = Release()
                let registration = HandlerRegistration(
                    WelcomeEmail.self, queue: queue,
                    options: HandlerOptions(retry: RetryPolicy(maxAttempts: 2, backoff: .explicit([.seconds(1)])))
                ) { email, context in
                    if email.email.hasPrefix("slow") { await release.wait() }
                    if email.email.hasPrefix("flaky"), context.attempt == 1 { throw Flaky() }
                    if email.email.hasPrefix("bounce") { throw Reject("550 no such mailbox") }
                }
                let worker = try await RunningWorker.start(
                    queue: queue, registrations: [registration], configuration: WorkerConfiguration(events: events))
                cleanups.add { await worker.stop() }
                let publisher = WarrenPublisher(transport: transport, events: events)
                for id in ["ok", "flaky", "bounce", "slow"] {
                    try await publisher.publish(
                        WelcomeEmail(userId: id, email: "\(id)@example.com"), to: .queue(queue), messageID: id)
                }

                #expect(
                    try await eventually { try await store.job(messageID: "slow")?.state == .running },
                    "running while its handler runs")
                #expect(
                    try await eventually { try await store.job(messageID: "flaky")?.state == .retrying },
                    "retrying between attempts")
                #expect(try await eventually { try await store.job(messageID: "flaky")?.state == .succeeded })
                #expect(try await eventually { try await store.job(messageID: "ok")?.state == .succeeded })
                #expect(try await eventually { try await store.job(messageID: "bounce")?.state == .deadLettered })
                let letter = try #require(try await store.job(messageID: "bounce"))
                #expect(letter.reason == "rejected" && letter.lastError?.contains("550") == true)
                let lag = try testMetrics.expectGauge("warren_ledger_lag_seconds", [("queue", ledgerQueue)])
                #expect(lag.lastValue.map { $0 >= 0 && $0 < 60 } == true, "the ledger reports how far behind it is")
                let flaky = try #require(try await store.job(messageID: "flaky"))
                #expect(flaky.timeline.map(\.outcome) == ["retry", "ack"] && flaky.publishedAtMs != nil)

                // The ledger stops; the worker goes on. Its events wait in the ledger's queue until a ledger runs again.
                ledger.shutdown()
                try await running.value
                release.open()
                // A queue of the test's own on the events exchange: once the settlement of "later" reaches it, the broker
                // has routed the same batch to the ledger's queue, where it waits.
                let probe = try await worker.connect()
                let probeChannel = try await probe.openChannel()
                let tap = TestBroker.uniqueName("tap")
                try await probeChannel.queueDeclare(tap, exclusive: true)
                try await probeChannel.queueBind(tap, exchange: exchange, routingKey: "#")
                try await publisher.publish(
                    WelcomeEmail(userId: "later", email: "later@example.com"), to: .queue(queue), messageID: "later")
                #expect(
                    try await eventually {
                        while let result = try await probeChannel.get(queue: tap, noAck: true) {
                            let batch = try WarrenEvent.decodeBatch(result.delivery.body)
                            if batch.contains(where: { $0.messageID == "later" && $0.event == .ack }) { return true }
                        }
                        return false
                    }, "the settlement of later was published")
                #expect(
                    try await probeChannel.queueStatus(ledgerQueue).messageCount > 0,
                    "its events wait in the ledger's queue")
                await probe.close()
                (ledger, running) = try await startLedger()
                #expect(
                    try await eventually { try await store.job(messageID: "later")?.state == .succeeded },
                    "recorded once a ledger runs again")
                #expect(try await eventually { try await store.job(messageID: "slow")?.state == .succeeded })
                ledger.shutdown()
                try await running.value
            }
        }
    }
}
