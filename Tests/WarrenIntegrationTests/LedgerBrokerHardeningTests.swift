import Foundation
import Testing
@_spi(WarrenTransport) import Warren
import WarrenAMQP
import WarrenLedger
import WarrenTestSupport

@testable import WarrenDashboard

/// Defects found by reading the dashboard's and the ledger's broker code, each with the test that catches it.
@Suite(
    "The ledger's and the dashboard's broker connections (broker)", .tags(.broker, .postgres),
    .needs(.broker, .postgres), .deletesItsQueues)
struct LedgerBrokerHardeningTests {
    @Test func theIntakeDrainsOnlyQueuesWarrenDeclaredAndClosesItsConsumerWhenItStops() async throws {
        let url = try await TestBroker.url()
        let declared = TestBroker.uniqueName("declared")
        let victim = TestBroker.uniqueName("victim")
        let victimDeadLetters = WarrenTopology(queue: victim).deadLetterQueue
        let declaredDeadLetters = WarrenTopology(queue: declared).deadLetterQueue
        try await withSQLiteStore { store, _ in
            try await store.migrate()
            let transport = RabbitMQTransport(endpoints: [try AMQPEndpoint(uri: url)], logger: TestBroker.quietLogger())
            try await transport.start()
            try await transport.prepare(queue: declared, delays: [])
            // A queue named like a dead-letter queue that no Warren worker declared, holding someone's messages.
            let connection = try await AMQPConnection.connect(to: AMQPEndpoint(uri: url))
            let channel = try await connection.openChannel()
            try await channel.enableConfirms()
            _ = try await channel.queueDeclare(victimDeadLetters)
            try await channel.publish(
                Array("not yours".utf8), routingKey: victimDeadLetters, properties: AMQPProperties(messageID: "v-1"))
            // Events (which anyone may publish) name both queues.
            try await store.record([
                WarrenEvent(event: .ack, messageID: "a", type: "t", queue: declared, attempt: 1, atMs: 1),
                WarrenEvent(event: .ack, messageID: "b", type: "t", queue: victim, attempt: 1, atMs: 1),
            ])
            let intake = DeadLetterIntake(
                transport: transport, store: store, rediscoverEvery: .milliseconds(200),
                logger: TestBroker.quietLogger())
            let running = Task { try await intake.run() }
            #expect(try await eventually { try await channel.queueStatus(declaredDeadLetters).consumerCount == 1 })
            // A later discovery (which looks at the victim again) shows by taking a queue declared after the first.
            let later = TestBroker.uniqueName("declared-later")
            try await transport.prepare(queue: later, delays: [])
            try await store.record([
                WarrenEvent(event: .ack, messageID: "c", type: "t", queue: later, attempt: 1, atMs: 1)
            ])
            let laterDeadLetters = WarrenTopology(queue: later).deadLetterQueue
            #expect(
                try await eventually { try await channel.queueStatus(laterDeadLetters).consumerCount == 1 },
                "discovered again")
            let untouched = try await channel.queueStatus(victimDeadLetters)
            #expect(untouched.messageCount == 1 && untouched.consumerCount == 0, "\(untouched)")

            running.cancel()
            _ = await running.result
            #expect(
                try await eventually { try await channel.queueStatus(declaredDeadLetters).consumerCount == 0 },
                "the consumer's channel is closed when the intake stops")
            #expect(transport.isConnected, "the shared transport stays open")
            for name in [
                victimDeadLetters, declared, declaredDeadLetters, WarrenTopology(queue: declared).redeliveredQueue,
                WarrenTopology(queue: declared).manifestQueue,
            ] {
                _ = try? await channel.queueDelete(name)
            }
            await connection.close()
            await transport.close()
        }
    }

    @Test func aLedgerQueueIsConsumedForOneStoreOnly() async throws {
        let url = try await TestBroker.url()
        let queue = TestBroker.uniqueName("ledger")
        let transport = RabbitMQTransport(endpoints: [try AMQPEndpoint(uri: url)], logger: TestBroker.quietLogger())
        let postgres = try await LocalPostgres.shared()
        let database = try await postgres.newDatabaseURL()
        let shared = [try PostgresLedgerStore(url: database), try PostgresLedgerStore(url: database)]
        try await withRunning(shared) {
            try await withSQLiteStore { other, _ in
                for store in shared as [any LedgerStore] + [other] { try await store.migrate() }
                #expect(
                    try await shared[0].identity() == (try await shared[1].identity()), "one database, one identity")
                #expect(try await shared[0].identity() != (try await other.identity()))
                // Running with a transport of its own (its worker closes it when it stops).
                let first = Ledger(
                    transport: RabbitMQTransport(
                        endpoints: [try AMQPEndpoint(uri: url)], logger: TestBroker.quietLogger()),
                    store: shared[0],
                    queue: queue, logger: TestBroker.quietLogger())
                let running = Task { try await first.run() }
                try await first.waitUntilConsuming()
                // Another process on the same PostgreSQL shares the queue.
                try await Ledger(transport: transport, store: shared[1], queue: queue, logger: TestBroker.quietLogger())
                    .declare()
                // While it is consumed, a ledger of another store would take half the events into the wrong store: it
                // refuses, saying what to do.
                await #expect {
                    try await Ledger(transport: transport, store: other, queue: queue, logger: TestBroker.quietLogger())
                        .declare()
                } throws: { error in
                    (error as? WarrenError)?.code == .invalidConfiguration
                        && "\(error)".contains("--ledger-queue \(queue).")
                }
                // Once nobody consumes it (its store replaced, say), another store takes it over, and then holds it.
                first.shutdown()
                _ = await running.result
                try await transport.start()
                let channel = try await #require(transport.connection).openChannel()
                #expect(try await eventually { try await channel.queueStatus(queue).consumerCount == 0 })
                try await Ledger(transport: transport, store: other, queue: queue, logger: TestBroker.quietLogger())
                    .declare()
                let taken = try #require(try await channel.get(queue: first.storeQueue))
                #expect(String(decoding: taken.delivery.body, as: UTF8.self) == (try await other.identity()))
                try await channel.close()
                let cleanup = try await #require(transport.connection).openChannel()
                let topology = WarrenTopology(queue: queue)
                for name in [
                    queue, first.storeQueue, topology.deadLetterQueue, topology.redeliveredQueue,
                    topology.manifestQueue,
                ]
                    + [1, 5, 30].map({ topology.delayQueue(for: .seconds($0)) })
                {
                    _ = try? await cleanup.queueDelete(name)
                }
            }
        }
        await transport.close()
    }

    @Test func aClosedTransportIsNotReopenedByReadingDeadLettersOrDeclaring() async throws {
        let url = try await TestBroker.url()
        let queue = TestBroker.uniqueName()
        let transport = RabbitMQTransport(endpoints: [try AMQPEndpoint(uri: url)], logger: TestBroker.quietLogger())
        // Before any start, these connect by themselves, as documented.
        try await transport.declareTopicExchange("amq.topic")
        try await transport.prepare(queue: queue, delays: [])
        #expect(try await transport.deadLetters(of: queue).isEmpty)
        await transport.close()
        await #expect(throws: (any Error).self) { try await transport.deadLetters(of: queue) }
        await #expect(throws: (any Error).self) { try await transport.declareTopicExchange("amq.topic") }
        #expect(!transport.isConnected, "still closed")
        try await transport.start()
        #expect(try await transport.deadLetters(of: queue).isEmpty, "start() opens it again")
        let connection = try #require(transport.connection)
        let channel = try await connection.openChannel()
        for name in [
            queue, WarrenTopology(queue: queue).deadLetterQueue, WarrenTopology(queue: queue).redeliveredQueue,
            WarrenTopology(queue: queue).manifestQueue,
        ] {
            _ = try? await channel.queueDelete(name)
        }
        await transport.close()
    }

    @Test func requestsAtOnceShareTheDashboardsOneConnection() async throws {
        let url = try await TestBroker.url()
        let reused = ReusedConnection(
            endpoints: [try AMQPEndpoint(uri: url)], name: "test-reused", logger: TestBroker.quietLogger())
        let connections = try await withThrowingTaskGroup(of: ObjectIdentifier.self) { group in
            for _ in 0..<20 { group.addTask { ObjectIdentifier(try await reused.open()) } }
            return try await group.reduce(into: Set<ObjectIdentifier>()) { $0.insert($1) }
        }
        let opened = await reused.opened
        #expect(connections.count == 1 && opened == 1, "one connection for twenty requests at once")
        await reused.close()
    }
}
