import Foundation
import Synchronization
import Testing
@_spi(WarrenTransport) import Warren
import WarrenAMQP
import WarrenTestSupport

@testable import WarrenLedger

/// A dead letter as a Warren worker writes it: its failure time, attempts, reason and queue in its headers.
func deadLetterMessage(
    _ id: String, queue: String, failedAtMs: Int64, body: String = #"{"userId":"u","email":"u@example.com"}"#,
    error: String = "Reject: 550 no such mailbox",
    extra: AMQPTable = [:]
) -> StoredMessage {
    var headers: AMQPTable = [
        WarrenHeader.reason: .string("rejected"), WarrenHeader.errorMessage: .string(error),
        WarrenHeader.attempts: .int64(1),
        WarrenHeader.originalQueue: .string(queue), WarrenHeader.lastFailureAt: .int64(failedAtMs),
        WarrenHeader.firstFailureAt: .int64(failedAtMs),
        WarrenHeader.host: .string("worker-1"),
    ]
    headers.merge(extra) { $1 }
    return StoredMessage(
        body: Array(body.utf8),
        properties: AMQPProperties(
            contentType: "application/json", headers: headers, deliveryMode: .persistent, messageID: id,
            timestamp: Date(timeIntervalSince1970: 1_795_000_000), type: "email.welcome"))
}

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

@Suite("Stored messages")
struct StoredMessageTests {
    @Test func everyHeaderKeepsItsAMQPType() throws {
        let headers: AMQPTable = [
            "bool": .bool(true), "int8": .int8(-7), "uint8": .uint8(200), "int16": .int16(-300),
            "uint16": .uint16(60_000),
            "int32": .int32(-70_000), "uint32": .uint32(4_000_000_000), "int64": .int64(.min), "uint64": .uint64(.max),
            "float": .float(1.5), "double": .double(-2.25), "nan": .double(.nan),
            "decimal": .decimal(scale: 2, value: 12345),
            "string": .string("<b>héllo</b>"), "bytes": .bytes([0, 255, 10]),
            "array": .array([.int8(1), .string("two"), .void]),
            "timestamp": .timestamp(1_795_000_000), "table": .table(["inner": .table(["deep": .int16(3)])]),
            "void": .void,
        ]
        let message = StoredMessage(
            body: [0, 1, 2, 0xff],
            properties: AMQPProperties(
                contentType: "application/octet-stream", contentEncoding: "identity", headers: headers,
                deliveryMode: .persistent,
                priority: 5, correlationID: "c", replyTo: "r", expiration: "60000", messageID: "m",
                timestamp: Date(timeIntervalSince1970: 1_795_000_000),
                type: "t", userID: "guest", appID: "a", clusterID: "k"))
        let read = try StoredMessage(encodedProperties: try message.encodedProperties(), base64Body: message.base64Body)
        #expect(read.body == message.body)
        var expected = message.properties
        var actual = read.properties
        // NaN is never equal to itself: compared apart.
        if case .double(let value)? = actual.headers?["nan"] { #expect(value.isNaN) } else { Issue.record("nan lost") }
        expected.headers?["nan"] = nil
        actual.headers?["nan"] = nil
        #expect(actual == expected)
    }

    @Test func textThatIsNotAStoredMessageIsAnError() {
        #expect(throws: (any Error).self) {
            try StoredMessage(encodedProperties: #"{"headers": {"x": {"type": "int9", "value": 1}}}"#, base64Body: "")
        }
        #expect(throws: (any Error).self) { try StoredMessage(encodedProperties: "{}", base64Body: "not base64!") }
    }
}

@Suite("Dead letters the ledger holds (SQLite, PostgreSQL)", .tags(.postgres), .needs(.postgres))
struct HeldDeadLetterStoreTests {
    let now = Int64(1_795_000_000_000)

    func take(_ id: String, at: Int64, queue: String = "emails", error: String = "Reject: 550 no such mailbox")
        -> IngestedDeadLetter
    {
        IngestedDeadLetter(
            message: deadLetterMessage(id, queue: queue, failedAtMs: at, error: error), queue: queue,
            receivedAtMs: at + 5)
    }

    /// The event the worker reported for the same failure, its body redacted by its host.
    func workerEvent(_ id: String, at: Int64) -> WarrenEvent {
        var event = WarrenEvent(
            event: .deadLetter, messageID: id, type: "email.welcome", queue: "emails", attempt: 1, atMs: at,
            durationMs: 3,
            error: "Reject: 550 no such mailbox", reason: "rejected", host: "worker-1")
        event.attach(
            DeadLetterContent(body: Array("[redacted]".utf8), headers: ["x-warren-reason": .string("rejected")]),
            bodyLimit: 1024)
        return event
    }

    @Test(arguments: StoreKind.allCases)
    func aTakenDeadLetterIsOneRecordWithItsWorkersEventWhicheverComesFirst(_ kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await store.migrate()
            #expect(try await store.schemaVersion() >= 5)
            // The queue's copy first, then the worker's event; and the other way round.
            try await store.take([take("first-copy", at: now)])
            try await store.record([workerEvent("first-copy", at: now)])
            try await store.record([workerEvent("first-event", at: now + 1)])
            try await store.take([take("first-event", at: now + 1)])
            try await store.take([take("first-event", at: now + 1)])  // redelivered after its commit: nothing new
            // A later event for a held dead letter (anyone may publish to the events exchange) changes nothing it shows.
            var forged = workerEvent("first-copy", at: now)
            forged.error = "harmless"
            forged.reason = "retries-exhausted"
            forged.attach(DeadLetterContent(body: Array(#"{"userId":"nice"}"#.utf8), headers: [:]), bodyLimit: 1024)
            try await store.record([forged])
            for id in ["first-copy", "first-event"] {
                let letters = try await store.deadLetters(messageID: id)
                #expect(letters.count == 1, "\(id): one record")
                #expect(
                    letters.first?.held == true && letters.first?.body == #"{"userId":"u","email":"u@example.com"}"#,
                    "\(id): shown as held, which is what a replay publishes")
                #expect(
                    letters.first?.error == "Reject: 550 no such mailbox" && letters.first?.reason == "rejected",
                    "\(id)")
                #expect(letters.first?.headers?[WarrenHeader.host] != nil, "\(id): the copy's headers")
                let job = try #require(try await store.job(messageID: id))
                #expect(
                    job.state == .deadLettered && job.timeline.map(\.outcome) == ["dead-letter"], "\(id): one attempt")
                #expect(
                    job.timeline.first?.durationMs == 3 && job.timeline.first?.host == "worker-1",
                    "\(id): the worker's timing, whichever came first")
            }
            let held = try await store.heldDeadLetters(
                matching: DeadLetterFilter(queue: "emails"), after: nil, limit: 10)
            #expect(held.map(\.messageID) == ["first-copy", "first-event"], "oldest first")
            #expect(
                held.first?.message == deadLetterMessage("first-copy", queue: "emails", failedAtMs: now),
                "the whole message, typed")
            #expect(try await store.countHeldDeadLetters(matching: DeadLetterFilter(messageID: "first-event")) == 1)
            #expect(try await store.countHeldDeadLetters(matching: DeadLetterFilter(queue: "other")) == 0)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func settlingHappensOnceAndMovesTheOperationOn(_ kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await store.migrate()
            try await store.take((0..<5).map { take("m\($0)", at: now + Int64($0)) })
            let group = try #require(try await store.deadLetters(messageID: "m0").first?.groupID)
            let operation = DeadLetterOperation(
                id: "op-1", action: .replay, filter: DeadLetterFilter(groupID: group), actor: "ada", role: "operator",
                createdAtMs: now + 100,
                total: 5)
            try await store.createOperation(operation)
            let firstTwo = try await store.heldDeadLetters(matching: operation.selection, after: nil, limit: 2)
            let events = firstTwo.map {
                DeadLetterReplay.replayCopy(of: $0.letter, fallbackQueue: $0.queue, replayID: "op-1").1
            }
            let moved = try await store.settle(firstTwo, events: events, for: operation, nowMs: now + 200)
            #expect(moved.settled == 2 && moved.cursor == LedgerCursor(atMs: now + 1, messageID: "m1"))
            #expect(try await store.operation(id: "op-1") == moved, "the progress is what the store recorded")
            // Another operation settling the same two settles nothing.
            let other = DeadLetterOperation(
                id: "op-2", action: .purge, filter: DeadLetterFilter(), actor: "ada", role: "operator",
                createdAtMs: now + 100, total: 5)
            try await store.createOperation(other)
            #expect(try await store.settle(firstTwo, events: events, for: other, nowMs: now + 300).settled == 0)
            #expect(try await store.countHeldDeadLetters(matching: DeadLetterFilter()) == 3)
            let settled = try #require(try await store.deadLetters(messageID: "m0").first)
            #expect(!settled.held && settled.settled == "replayed" && settled.settledBy == "op-1")
            #expect(try await store.job(messageID: "m0")?.state == .replayed)
            // A redelivered copy of a settled dead letter is not held again.
            try await store.take([take("m0", at: now)])
            #expect(try await store.countHeldDeadLetters(matching: DeadLetterFilter(messageID: "m0")) == 0)
            // The rest, after the cursor.
            let rest = try await store.heldDeadLetters(matching: operation.selection, after: moved.cursor, limit: 10)
            #expect(rest.map(\.messageID) == ["m2", "m3", "m4"])
            try await store.finishOperation(id: "op-1", status: .done, error: nil, nowMs: now + 400)
            #expect(try await store.operation(id: "op-1")?.status == .done)
            #expect(try await store.operations(limit: 10).map(\.id).sorted() == ["op-1", "op-2"])
            #expect(try await store.unfinishedOperations() == ["op-2"])
        }
    }

    @Test(arguments: StoreKind.allCases)
    func aLeaseKeepsAnOperationToOneRunnerUntilItRunsOut(_ kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await store.migrate()
            try await store.createOperation(
                DeadLetterOperation(
                    id: "op", action: .replay, filter: DeadLetterFilter(), actor: "token", role: "operator",
                    createdAtMs: now, total: 0))
            #expect(try await store.claimOperation(id: "op", owner: "a", leaseUntilMs: now + 1_000, nowMs: now))
            #expect(
                try await store.claimOperation(id: "op", owner: "a", leaseUntilMs: now + 2_000, nowMs: now + 500),
                "renewed by its owner")
            #expect(
                try await !store.claimOperation(id: "op", owner: "b", leaseUntilMs: now + 3_000, nowMs: now + 1_500),
                "held by a")
            #expect(
                try await store.claimOperation(id: "op", owner: "b", leaseUntilMs: now + 4_000, nowMs: now + 2_001),
                "a's ran out")
            try await store.finishOperation(id: "op", status: .done, error: nil, nowMs: now + 2_100)
            #expect(
                try await !store.claimOperation(id: "op", owner: "b", leaseUntilMs: now + 5_000, nowMs: now + 2_200),
                "a finished one is not run again")
            #expect(try await !store.claimOperation(id: "nobody", owner: "b", leaseUntilMs: now, nowMs: now))
        }
    }
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

@Suite("A replay's second copy (broker)", .tags(.broker), .needs(.broker), .deletesItsQueues)
struct ReplayCopyTests {
    @Test func aSecondCopyOfOneReplayIsDroppedOnceTheFirstSettledAndAnotherReplayRuns() async throws {
        let queue = TestBroker.uniqueName()
        let runs = Mutex(0)
        let outcomes = Mutex<[(String, Bool)]>([])
        let registration = HandlerRegistration(
            WelcomeEmail.self, queue: queue, options: HandlerOptions(idempotency: InMemoryIdempotencyStore())
        ) { _, _ in
            runs.withLock { $0 += 1 }
            throw Reject("still failing")
        }
        let worker = try await RunningWorker.start(
            queue: queue, registrations: [registration],
            observer: { event in outcomes.withLock { $0.append((event.outcome.name, event.duplicate)) } })
        let body = #"{"userId":"r","email":"r@example.com"}"#
        for (index, replay) in ["op-1", "op-1", "op-2"].enumerated() {
            try await worker.publish(body, messageID: "replayed", headers: [WarrenHeader.replayID: .string(replay)])
            #expect(try await eventually { outcomes.withLock { $0.count } == index + 1 })
        }
        await worker.stop()
        #expect(runs.withLock { $0 } == 2, "op-1's second copy did not run")
        let seen = outcomes.withLock { $0 }
        #expect(
            seen.map(\.0) == ["dead-letter", "ack", "dead-letter"] && seen.map(\.1) == [false, true, false], "\(seen)")
    }
}
