import Synchronization
import Testing
@_spi(WarrenTransport) import Warren
import WarrenTestSupport

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
