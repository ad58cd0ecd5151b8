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

@Suite("Waiting without polling")
struct AwaitableStateTests {
    @Test func aWaiterResumesWhenAnUpdateMeetsItsConditionAndNotBefore() async throws {
        let state = AwaitableState(0)
        let waiter = Task { try await state.wait { $0 >= 2 } }
        state.update { $0 = 1 }
        try await Task.sleep(for: .milliseconds(50))
        #expect(state.value == 1)
        state.update { $0 = 2 }
        try await waiter.value
        try await state.wait { $0 == 2 }  // already met: returns at once
    }

    @Test func aCancelledWaiterThrowsAndIsForgotten() async throws {
        let state = AwaitableState(false)
        let waiter = Task { try await state.wait { $0 } }
        try await Task.sleep(for: .milliseconds(20))
        waiter.cancel()
        await #expect(throws: CancellationError.self) { try await waiter.value }
        state.update { $0 = true }  // nobody left to resume
    }

    @Test func aTimedWaitSaysWhetherTheConditionWasMetInTime() async {
        let state = AwaitableState(0)
        let clock = ContinuousClock()
        let started = clock.now
        #expect(await state.wait(until: { $0 == 1 }, timeout: .milliseconds(50)) == false)
        #expect(clock.now - started >= .milliseconds(50))
        Task {
            try await Task.sleep(for: .milliseconds(20))
            state.update { $0 = 1 }
        }
        #expect(await state.wait(until: { $0 == 1 }, timeout: .seconds(10)))
    }

    @Test func theShutdownSignalWakesItsWaitersAndAnInFlightCountItsIdleWaiter() async throws {
        let signal = ShutdownSignal()
        let waiter = Task { try await signal.wait() }
        signal.trigger()
        try await waiter.value
        let inFlight = InFlightCounter()
        inFlight.enter()
        Task {
            try await Task.sleep(for: .milliseconds(20))
            inFlight.leave()
        }
        #expect(await inFlight.waitUntilIdle(timeout: .seconds(10)))
        inFlight.enter()
        #expect(await inFlight.waitUntilIdle(timeout: .milliseconds(20)) == false)
    }
}
