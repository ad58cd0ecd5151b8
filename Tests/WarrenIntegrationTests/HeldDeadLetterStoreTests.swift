import Testing
@_spi(WarrenTransport) import Warren
import WarrenTestSupport

@testable import WarrenLedger

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
