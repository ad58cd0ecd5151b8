import Synchronization
import Testing
@testable import Warren

@Suite("Shutdown signal")
struct ShutdownSignalTests {
    @Test func removedActionsDoNotRunAndDoNotPileUp() async throws {
        let signal = ShutdownSignal()
        let ran = Mutex<[String]>([])
        for round in 0..<1000 {
            // What every consumer of every recovery does: register, then remove when it ends.
            let token = signal.onTrigger { ran.withLock { $0.append("round \(round)") } }
            signal.remove(token)
        }
        signal.onTrigger { ran.withLock { $0.append("live") } }
        signal.trigger()
        try await Task.sleep(for: .milliseconds(100))
        #expect(ran.withLock { $0 } == ["live"])
        signal.onTrigger { ran.withLock { $0.append("late") } }
        try await Task.sleep(for: .milliseconds(100))
        #expect(ran.withLock { $0 } == ["live", "late"], "after the trigger an action runs at once")
    }
}
