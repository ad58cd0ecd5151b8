import Testing
@_spi(WarrenTransport) import Warren
import WarrenAMQP
import WarrenTestSupport

@testable import WarrenLedger

/// The ledger's bounds that the stores themselves keep, on SQLite and on PostgreSQL.
@Suite("The ledger's bounds (SQLite, PostgreSQL)", .tags(.postgres), .needs(.postgres))
struct LedgerBoundsPostgresTests: LedgerBoundsFixture {
    @Test(arguments: StoreKind.allCases)
    func aJobPastItsBoundsIsCutWhileTheRestOfItsBatchIsRecorded(_ kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await store.migrate()
            // One batch: a job flooding its events and dead letters among other jobs' events, a NUL in an error
            // (PostgreSQL's text cannot hold one) and an id no AMQP message has.
            var batch: [WarrenEvent] = (0..<1_100).map { event(.started, "flood", at: now + Int64($0)) }
            batch += (0..<150).map { event(.deadLetter, "flood", at: now + 10_000 + Int64($0), error: "x") }
            batch.insert(event(.ack, "other-1", at: now), at: 500)
            batch.append(event(.ack, "other-2", at: now, error: "NUL \u{0} here"))
            batch.append(event(.ack, String(repeating: "i", count: 300), at: now))
            try await store.record(batch)
            #expect(try await store.job(messageID: "other-1")?.state == .succeeded)
            #expect(try await store.job(messageID: "other-2")?.state == .succeeded)
            let flood = try #require(try await store.job(messageID: "flood"))
            #expect(flood.timeline.count <= LedgerBounds.eventsPerJob)
            #expect(
                try await store.eventCount() == LedgerBounds.eventsPerJob + 2, "1,000 of the flood, and the two others")
            // Later batches add nothing more for that job, and a job's dead letters stop at their bound.
            try await store.record((0..<10).map { event(.deadLetter, "flood", at: now + 20_000 + Int64($0)) })
            #expect(try await store.eventCount() == LedgerBounds.eventsPerJob + 2)
            try await store.record((0..<150).map { event(.deadLetter, "letters", at: now + Int64($0), error: "again") })
            #expect(try await store.deadLetters(messageID: "letters").count == LedgerBounds.deadLettersPerJob)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func aDeadLetterWhoseIdNoStoreCanKeyIsHeldAllTheSame(_ kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await store.migrate()
            let message = StoredMessage(body: Array("x".utf8), properties: AMQPProperties(messageID: "nul\u{0}id"))
            try await store.take([IngestedDeadLetter(message: message, queue: "emails", receivedAtMs: now)])
            let held = try await store.heldDeadLetters(matching: DeadLetterFilter(), after: nil, limit: 10)
            #expect(
                held.map(\.messageID) == ["nul\u{FFFD}id"] && held.first?.message.properties.messageID == "nul\u{0}id",
                "the message keeps its own id")
            // A base64 body with a NUL, from an event: recorded (PostgreSQL refused the whole batch before).
            var letter = event(.deadLetter, "b64", at: now, error: "x")
            letter.bodyEncoding = "base64"
            letter.body = "AAAA\u{0}"
            try await store.record([letter, event(.ack, "neighbour", at: now)])
            #expect(try await store.job(messageID: "neighbour")?.state == .succeeded)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func theAuditLogIsPrunedByItsOwnRetention(_ kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await store.migrate()
            let day: Int64 = 86_400_000
            for age in [400, 366, 10, 0] as [Int64] {
                _ = try await store.recordAudit(
                    AuditEntry(
                        atMs: now - age * day, actor: "ada", role: "operator", action: "replay",
                        target: "message m-\(age)", count: 1,
                        outcome: "done", requestID: "r-\(age)"))
            }
            var policy = RetentionPolicy.keepEverything
            policy.audit = .seconds(365 * 86_400)
            let pruned = try await store.prune(policy, nowMs: now)
            #expect(pruned.auditEntries == 2 && pruned.jobs == 0)
            #expect(try await store.auditLog(limit: 10, before: nil).map(\.requestID) == ["r-0", "r-10"])
        }
    }

    @Test(arguments: StoreKind.allCases)
    func aDeadLetterWithoutWarrensTimeIsOneRecordWhenTheBrokerRedeliversIt(_ kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await store.migrate()
            // Dead-lettered by RabbitMQ itself (a TTL): keyed by x-death's time, whenever it is received.
            let expired = StoredMessage(
                body: Array("expired".utf8),
                properties: AMQPProperties(
                    headers: [
                        "x-death": [
                            [
                                "queue": "emails", "reason": "expired", "count": .int64(1),
                                "time": .timestamp(1_795_000_000),
                            ]
                        ]
                    ],
                    messageID: "ttl-1"))
            let first = IngestedDeadLetter(message: expired, queue: "emails", receivedAtMs: now)
            let again = IngestedDeadLetter(message: expired, queue: "emails", receivedAtMs: now + 5_000)
            #expect(first.event.atMs == 1_795_000_000_000 && first.event.reason == "expired" && !first.keyedByReceipt)
            try await store.take([first])
            try await store.take([again])
            #expect(try await store.deadLetters(messageID: "ttl-1").count == 1)
            // A foreign producer's message with no time at all: recognised by its content.
            let foreign = StoredMessage(
                body: Array("foreign".utf8), properties: AMQPProperties(contentType: "text/plain"))
            let one = IngestedDeadLetter(message: foreign, queue: "emails", receivedAtMs: now)
            let two = IngestedDeadLetter(message: foreign, queue: "emails", receivedAtMs: now + 7_000)
            #expect(one.keyedByReceipt && one.messageID == two.messageID)
            try await store.take([one])
            try await store.take([two])
            #expect(try await store.countHeldDeadLetters(matching: DeadLetterFilter(messageID: one.messageID)) == 1)
            // Once replayed, the same content arriving again is a new dead letter, held again.
            let operation = DeadLetterOperation(
                id: "op-foreign", action: .replay, filter: DeadLetterFilter(messageID: one.messageID), actor: "ada",
                role: "operator",
                createdAtMs: now, total: 1)
            try await store.createOperation(operation)
            let toSettle = try await store.heldDeadLetters(
                matching: DeadLetterFilter(messageID: one.messageID), after: nil, limit: 10)
            _ = try await store.settle(
                toSettle,
                events: toSettle.map {
                    WarrenEvent(event: .replayed, messageID: $0.messageID, type: nil, queue: "emails", atMs: now + 1)
                },
                for: operation, nowMs: now + 1)
            #expect(try await store.countHeldDeadLetters(matching: DeadLetterFilter(messageID: one.messageID)) == 0)
            try await store.take([IngestedDeadLetter(message: foreign, queue: "emails", receivedAtMs: now + 60_000)])
            #expect(try await store.countHeldDeadLetters(matching: DeadLetterFilter(messageID: one.messageID)) == 1)
            // Another message with no time and the same id but another body is another dead letter.
            let other = StoredMessage(body: Array("other".utf8), properties: AMQPProperties(messageID: "shared-id"))
            let changed = StoredMessage(body: Array("changed".utf8), properties: AMQPProperties(messageID: "shared-id"))
            try await store.take([IngestedDeadLetter(message: other, queue: "emails", receivedAtMs: now)])
            try await store.take([IngestedDeadLetter(message: changed, queue: "emails", receivedAtMs: now + 1)])
            #expect(try await store.countHeldDeadLetters(matching: DeadLetterFilter(messageID: "shared-id")) == 2)
        }
    }
}
