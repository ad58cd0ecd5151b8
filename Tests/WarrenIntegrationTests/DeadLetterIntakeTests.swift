import Foundation
import Synchronization
import Testing
@_spi(WarrenTransport) import Warren
import WarrenAMQP
import WarrenTestSupport

@testable import WarrenLedger

/// A fresh store holding `count` dead letters (`<prefix>-00`, … oldest first) of a new work queue declared on the test
/// broker, and a transport; the queue is deleted after `body`.
func withHeldDeadLetters(
    _ count: Int, prefix: String,
    _ body: (SQLiteLedgerStore, RabbitMQTransport, _ queue: String, _ ids: [String]) async throws -> Void
) async throws {
    let url = try await TestBroker.url()
    let queue = TestBroker.uniqueName()
    try await withSQLiteStore { store, _ in
        try await store.migrate()
        let transport = RabbitMQTransport(endpoints: [try AMQPEndpoint(uri: url)], logger: TestBroker.quietLogger())
        try await transport.start()
        try await transport.prepare(queue: queue, delays: [])
        let base = Int64(Date().timeIntervalSince1970 * 1000) - 60_000
        let ids = (0..<count).map { String(format: "\(prefix)-%02d", $0) }
        try await store.take(
            ids.enumerated().map { index, id in
                IngestedDeadLetter(
                    message: deadLetterMessage(id, queue: queue, failedAtMs: base + Int64(index)), queue: queue,
                    receivedAtMs: base)
            })
        var failure: (any Error)?
        do { try await body(store, transport, queue, ids) } catch { failure = error }
        let connection = try await AMQPConnection.connect(to: AMQPEndpoint(uri: url), logger: TestBroker.quietLogger())
        let channel = try await connection.openChannel()
        _ = try? await channel.queueDelete(queue)
        _ = try? await channel.queueDelete(WarrenTopology(queue: queue).deadLetterQueue)
        await connection.close()
        await transport.close()
        if let failure { throw failure }
    }
}

/// Every message in `queue` now, taken off it.
func takeAll(from queue: String) async throws -> [AMQPDelivery] {
    let connection = try await AMQPConnection.connect(
        to: AMQPEndpoint(uri: try await TestBroker.url()), logger: TestBroker.quietLogger())
    let channel = try await connection.openChannel()
    var deliveries: [AMQPDelivery] = []
    while let got = try await channel.get(queue: queue, noAck: true) { deliveries.append(got.delivery) }
    await connection.close()
    return deliveries
}

/// Stops an operation as a crash would, for the fault hook.
struct CrashForTest: Error {}

/// Throws ``CrashForTest`` the `nth` time `step` is reached.
final class CrashAt: Sendable {
    let step: DeadLetterOperationRunner.Step
    let nth: Int
    private let reached = Mutex(0)

    init(_ step: DeadLetterOperationRunner.Step, nth: Int) {
        self.step = step
        self.nth = nth
    }

    func check(_ at: DeadLetterOperationRunner.Step) throws {
        guard at == step else { return }
        if reached.withLock({
            $0 += 1
            return $0
        }) == nth {
            throw CrashForTest()
        }
    }
}

@Suite(
    "Dead letters taken into the ledger and replayed from it (broker)", .serialized, .tags(.broker, .postgres),
    .needs(.broker, .postgres), .deletesItsQueues)
struct DeadLetterIntakeTests {
    @Test func aDeadLetterIsTakenOffItsQueueWholeAndIsOneRecordWithItsEvent() async throws {
        let url = try await TestBroker.url()
        let queue = TestBroker.uniqueName()
        let exchange = TestBroker.uniqueName("events")
        let ledgerQueue = TestBroker.uniqueName("ledger")
        try await withSQLiteStore { store, _ in
            let transport = RabbitMQTransport(endpoints: [try AMQPEndpoint(uri: url)], logger: TestBroker.quietLogger())
            try await transport.start()
            let events = WarrenEventPublisher(
                transport: transport, options: EventOptions(exchange: exchange, flushInterval: .milliseconds(20)),
                logger: TestBroker.quietLogger())
            let ledger = Ledger(
                transport: RabbitMQTransport(endpoints: [try AMQPEndpoint(uri: url)], logger: TestBroker.quietLogger()),
                store: store,
                queue: ledgerQueue, exchange: exchange, logger: TestBroker.quietLogger())
            let ledgerTask = Task { try await ledger.run() }
            try await ledger.waitUntilConsuming(timeout: .seconds(30))
            let registration = HandlerRegistration(WelcomeEmail.self, queue: queue) { _, _ in
                throw Reject("550 no such mailbox")
            }
            let worker = try await RunningWorker.start(
                queue: queue, registrations: [registration], configuration: WorkerConfiguration(events: events))
            let typed: AMQPTable = [
                "tenant": .int8(7), "route": .table(["hops": .array([.int16(1), .int16(2)])]),
                "blob": .bytes([0, 1, 254]),
            ]
            try await worker.publish(#"{"userId":"b","email":"b@example.com"}"#, messageID: "bounce", headers: typed)
            #expect(try await eventually { try await store.job(messageID: "bounce")?.state == .deadLettered })
            #expect(try await worker.deadLetters().count == 1, "in its queue until a ledger takes it")

            let intake = DeadLetterIntake(
                transport: RabbitMQTransport(endpoints: [try AMQPEndpoint(uri: url)], logger: TestBroker.quietLogger()),
                store: store,
                queues: [queue, TestBroker.uniqueName("never-declared")], discover: false,
                logger: TestBroker.quietLogger())
            // A queue without a dead-letter queue (never declared) is passed over; the other is taken in.
            let intakeTask = Task { try await intake.run() }
            #expect(
                try await eventually {
                    try await store.countHeldDeadLetters(matching: DeadLetterFilter(queue: queue)) == 1
                })
            #expect(
                try await eventually { try await worker.deadLetters().isEmpty }, "acked off its queue once committed")
            let held = try #require(
                try await store.heldDeadLetters(matching: DeadLetterFilter(messageID: "bounce"), after: nil, limit: 5)
                    .first)
            #expect(String(decoding: held.message.body, as: UTF8.self) == #"{"userId":"b","email":"b@example.com"}"#)
            for (name, value) in typed {
                #expect(held.message.properties.headers?[name] == value, "\(name) keeps its AMQP type")
            }
            #expect(held.message.properties.type == "email.welcome" && held.letter.reason?.kind == .rejected)
            let records = try await store.deadLetters(messageID: "bounce")
            #expect(
                records.count == 1 && records.first?.held == true, "one record: the worker's event and the queue's copy"
            )
            #expect(try await store.job(messageID: "bounce")?.timeline.map(\.outcome) == ["dead-letter"])

            intakeTask.cancel()
            _ = try? await intakeTask.value
            await worker.stop()
            ledger.shutdown()
            try await ledgerTask.value
            await transport.close()
        }
    }

    /// A bulk replay killed at `step` of its second batch (of three) and resumed by another runner.
    @Test(arguments: DeadLetterOperationRunner.Step.allCases)
    func aBulkReplayKilledAtAStepFinishesAndRepublishesOnlyTheConfirmedBatch(_ step: DeadLetterOperationRunner.Step)
        async throws
    {
        try await withHeldDeadLetters(25, prefix: "dl") { store, transport, queue, ids in
            let crash = CrashAt(step, nth: 2)
            let crashing = DeadLetterOperationRunner(
                store: store, transport: transport, owner: "crashing", batchSize: 10, leaseDuration: .milliseconds(1),
                fault: { at, _ in try crash.check(at) }, logger: TestBroker.quietLogger())
            let operation = try await crashing.start(
                .replay, filter: DeadLetterFilter(queue: queue), actor: "test", role: "operator")
            #expect(operation.total == 25)
            var crashed = false
            do { try await crashing.execute(operation.id) } catch is CrashForTest { crashed = true }
            #expect(crashed, "stopped at \(step)")
            let atCrash = try #require(try await store.operation(id: operation.id))
            #expect(atCrash.status == .running)
            #expect(atCrash.settled == (step == .committed ? 20 : 10), "the committed progress")

            try await Task.sleep(for: .milliseconds(5))  // the crashed runner's lease runs out
            // Another process's runner finds it among the unfinished operations (what its service loop does every 5 s).
            let resuming = DeadLetterOperationRunner(
                store: store, transport: transport, owner: "resuming", batchSize: 10, logger: TestBroker.quietLogger())
            #expect(try await store.unfinishedOperations() == [operation.id])
            await resuming.resumeUnfinished()
            let ended = try #require(try await store.operation(id: operation.id))
            #expect(ended.status == .done && ended.settled == 25)
            #expect(try await store.countHeldDeadLetters(matching: DeadLetterFilter(queue: queue)) == 0)

            // What reached the work queue: every dead letter once, but the second batch twice when the crash fell
            // between its confirms and its commit; every copy marked with the operation.
            var copies: [String: Int] = [:]
            for copy in try await takeAll(from: queue) {
                #expect(copy.properties.headers?[WarrenHeader.replayID]?.stringValue == operation.id)
                #expect(copy.properties.headers?[WarrenHeader.attempts] == nil, "a fresh attempt count")
                copies[copy.properties.messageID ?? "", default: 0] += 1
            }
            let twice = step == .confirmed ? Set(ids[10..<20]) : []
            #expect(copies == Dictionary(uniqueKeysWithValues: ids.map { ($0, twice.contains($0) ? 2 : 1) }))
            #expect(try await store.job(messageID: "dl-00")?.state == .replayed)
        }
    }

    @Test func oneOperationRunsOnceWhenAskedTwiceAtOnce() async throws {
        try await withHeldDeadLetters(30, prefix: "twice") { store, transport, queue, _ in
            // A request's execute and the resume loop's, in one process: the runner's own lease must not let both run.
            let runner = DeadLetterOperationRunner(
                store: store, transport: transport, batchSize: 10, logger: TestBroker.quietLogger())
            let operation = try await runner.start(
                .replay, filter: DeadLetterFilter(queue: queue), actor: "test", role: "operator")
            async let first = runner.execute(operation.id)
            async let second = runner.execute(operation.id)
            _ = try await (first, second)
            #expect(try await eventually { try await store.operation(id: operation.id)?.status == .done })
            #expect(try await takeAll(from: queue).count == 30)
        }
    }

    @Test func aPurgeForgetsTheMessagesAndAReplayToAQueueThatIsGoneFails() async throws {
        let url = try await TestBroker.url()
        let queue = TestBroker.uniqueName()
        try await withSQLiteStore { store, _ in
            try await store.migrate()
            let transport = RabbitMQTransport(endpoints: [try AMQPEndpoint(uri: url)], logger: TestBroker.quietLogger())
            try await transport.start()
            let now = Int64(Date().timeIntervalSince1970 * 1000) - 1_000
            try await store.take([
                IngestedDeadLetter(
                    message: deadLetterMessage("p1", queue: queue, failedAtMs: now), queue: queue, receivedAtMs: now),
                IngestedDeadLetter(
                    message: deadLetterMessage("p2", queue: queue, failedAtMs: now + 1), queue: queue, receivedAtMs: now
                ),
            ])
            let runner = DeadLetterOperationRunner(store: store, transport: transport, logger: TestBroker.quietLogger())
            // The work queue does not exist: the copy is returned (mandatory), the operation fails, nothing is settled.
            let replay = try await runner.start(
                .replay, filter: DeadLetterFilter(messageID: "p1"), actor: "test", role: "operator")
            let failed = try #require(try await runner.execute(replay.id))
            #expect(
                failed.status == .failed && failed.settled == 0 && failed.error?.contains("p1") == true, "\(failed)")
            #expect(try await store.countHeldDeadLetters(matching: DeadLetterFilter(messageID: "p1")) == 1)

            let purge = try await runner.start(
                .purge, filter: DeadLetterFilter(queue: queue), actor: "test", role: "operator")
            let purged = try #require(try await runner.execute(purge.id))
            #expect(purged.status == .done && purged.settled == 2)
            #expect(try await store.job(messageID: "p2")?.state == .purged)
            #expect(try await store.heldDeadLetters(matching: DeadLetterFilter(), after: nil, limit: 10).isEmpty)
            #expect(try await store.deadLetters(messageID: "p1").first?.settled == "purged")
            await transport.close()
        }
    }
}
