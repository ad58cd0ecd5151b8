import Foundation
import Synchronization
import Testing
import WarrenTestSupport
@_spi(WarrenTransport) import Warren
import WarrenAMQP
@testable import WarrenLedger

/// A dead letter as a Warren worker writes it: its failure time, attempts, reason and queue in its headers.
func deadLetterMessage(
    _ id: String, queue: String, failedAtMs: Int64, body: String = #"{"userId":"u","email":"u@example.com"}"#, error: String = "Reject: 550 no such mailbox",
    extra: AMQPTable = [:]
) -> StoredMessage {
    var headers: AMQPTable = [
        WarrenHeader.reason: .string("rejected"), WarrenHeader.errorMessage: .string(error), WarrenHeader.attempts: .int64(1),
        WarrenHeader.originalQueue: .string(queue), WarrenHeader.lastFailureAt: .int64(failedAtMs), WarrenHeader.firstFailureAt: .int64(failedAtMs),
        WarrenHeader.host: .string("worker-1"),
    ]
    headers.merge(extra) { $1 }
    return StoredMessage(
        body: Array(body.utf8),
        properties: AMQPProperties(
            contentType: "application/json", headers: headers, deliveryMode: .persistent, messageID: id,
            timestamp: Date(timeIntervalSince1970: 1_795_000_000), type: "email.welcome"))
}

@Suite("Stored messages")
struct StoredMessageTests {
    @Test func everyHeaderKeepsItsAMQPType() throws {
        let headers: AMQPTable = [
            "bool": .bool(true), "int8": .int8(-7), "uint8": .uint8(200), "int16": .int16(-300), "uint16": .uint16(60_000),
            "int32": .int32(-70_000), "uint32": .uint32(4_000_000_000), "int64": .int64(.min), "uint64": .uint64(.max),
            "float": .float(1.5), "double": .double(-2.25), "nan": .double(.nan), "decimal": .decimal(scale: 2, value: 12345),
            "string": .string("<b>héllo</b>"), "bytes": .bytes([0, 255, 10]), "array": .array([.int8(1), .string("two"), .void]),
            "timestamp": .timestamp(1_795_000_000), "table": .table(["inner": .table(["deep": .int16(3)])]), "void": .void,
        ]
        let message = StoredMessage(
            body: [0, 1, 2, 0xff],
            properties: AMQPProperties(
                contentType: "application/octet-stream", contentEncoding: "identity", headers: headers, deliveryMode: .persistent,
                priority: 5, correlationID: "c", replyTo: "r", expiration: "60000", messageID: "m", timestamp: Date(timeIntervalSince1970: 1_795_000_000),
                type: "t", userID: "guest", appID: "a", clusterID: "k"))
        let read = try StoredMessage(encodedProperties: try message.encodedProperties(), base64Body: message.base64Body)
        #expect(read.body == message.body)
        var expected = message.properties, actual = read.properties
        // NaN is never equal to itself: compared apart.
        if case .double(let value)? = actual.headers?["nan"] { #expect(value.isNaN) } else { Issue.record("nan lost") }
        expected.headers?["nan"] = nil
        actual.headers?["nan"] = nil
        #expect(actual == expected)
    }

    @Test func textThatIsNotAStoredMessageIsAnError() {
        #expect(throws: (any Error).self) { try StoredMessage(encodedProperties: #"{"headers": {"x": {"type": "int9", "value": 1}}}"#, base64Body: "") }
        #expect(throws: (any Error).self) { try StoredMessage(encodedProperties: "{}", base64Body: "not base64!") }
    }
}

@Suite("Dead letters the ledger holds (SQLite, PostgreSQL)")
struct HeldDeadLetterStoreTests {
    let now = Int64(1_795_000_000_000)

    func take(_ id: String, at: Int64, queue: String = "emails", error: String = "Reject: 550 no such mailbox") -> IngestedDeadLetter {
        IngestedDeadLetter(message: deadLetterMessage(id, queue: queue, failedAtMs: at, error: error), queue: queue, receivedAtMs: at + 5)
    }

    /// The event the worker reported for the same failure, its body redacted by its host.
    func workerEvent(_ id: String, at: Int64) -> WarrenEvent {
        var event = WarrenEvent(
            event: .deadLetter, messageID: id, type: "email.welcome", queue: "emails", attempt: 1, atMs: at, durationMs: 3,
            error: "Reject: 550 no such mailbox", reason: "rejected", host: "worker-1")
        event.attach(DeadLetterContent(body: Array("[redacted]".utf8), headers: ["x-warren-reason": .string("rejected")]), bodyLimit: 1024)
        return event
    }

    @Test(arguments: StoreKind.allCases)
    func aTakenDeadLetterIsOneRecordWithItsWorkersEventWhicheverComesFirst(_ kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await store.migrate()
            #expect(try await store.schemaVersion() == 5)
            // The queue's copy first, then the worker's event; and the other way round.
            try await store.take([take("first-copy", at: now)])
            try await store.record([workerEvent("first-copy", at: now)])
            try await store.record([workerEvent("first-event", at: now + 1)])
            try await store.take([take("first-event", at: now + 1)])
            try await store.take([take("first-event", at: now + 1)])  // redelivered after its commit: nothing new
            for id in ["first-copy", "first-event"] {
                let letters = try await store.deadLetters(messageID: id)
                #expect(letters.count == 1, "\(id): one record")
                #expect(letters.first?.held == true && letters.first?.body == "[redacted]", "\(id): shown as the worker reported it")
                let job = try #require(try await store.job(messageID: id))
                #expect(job.state == .deadLettered && job.timeline.map(\.outcome) == ["dead-letter"], "\(id): one attempt")
            }
            let held = try await store.heldDeadLetters(matching: DeadLetterFilter(queue: "emails"), after: nil, limit: 10)
            #expect(held.map(\.messageID) == ["first-copy", "first-event"], "oldest first")
            #expect(held.first?.message == deadLetterMessage("first-copy", queue: "emails", failedAtMs: now), "the whole message, typed")
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
                id: "op-1", action: .replay, filter: DeadLetterFilter(groupID: group), actor: "ada", role: "operator", createdAtMs: now + 100,
                total: 5)
            try await store.createOperation(operation)
            let firstTwo = try await store.heldDeadLetters(matching: operation.selection, after: nil, limit: 2)
            let events = firstTwo.map { DeadLetterReplay.replayCopy(of: $0.letter, fallbackQueue: $0.queue, replayID: "op-1").1 }
            let moved = try await store.settle(firstTwo, events: events, for: operation, nowMs: now + 200)
            #expect(moved.settled == 2 && moved.cursor == LedgerCursor(atMs: now + 1, messageID: "m1"))
            #expect(try await store.operation(id: "op-1") == moved, "the progress is what the store recorded")
            // Another operation settling the same two settles nothing.
            let other = DeadLetterOperation(id: "op-2", action: .purge, filter: DeadLetterFilter(), actor: "ada", role: "operator", createdAtMs: now + 100, total: 5)
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
            try await store.createOperation(DeadLetterOperation(
                id: "op", action: .replay, filter: DeadLetterFilter(), actor: "token", role: "operator", createdAtMs: now, total: 0))
            #expect(try await store.claimOperation(id: "op", owner: "a", leaseUntilMs: now + 1_000, nowMs: now))
            #expect(try await store.claimOperation(id: "op", owner: "a", leaseUntilMs: now + 2_000, nowMs: now + 500), "renewed by its owner")
            #expect(try await !store.claimOperation(id: "op", owner: "b", leaseUntilMs: now + 3_000, nowMs: now + 1_500), "held by a")
            #expect(try await store.claimOperation(id: "op", owner: "b", leaseUntilMs: now + 4_000, nowMs: now + 2_001), "a's ran out")
            try await store.finishOperation(id: "op", status: .done, error: nil, nowMs: now + 2_100)
            #expect(try await !store.claimOperation(id: "op", owner: "b", leaseUntilMs: now + 5_000, nowMs: now + 2_200), "a finished one is not run again")
            #expect(try await !store.claimOperation(id: "nobody", owner: "b", leaseUntilMs: now, nowMs: now))
        }
    }
}
