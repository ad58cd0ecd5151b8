import Synchronization
import Testing
@testable import Warren
import WarrenTestSupport

@Suite("Shutdown signal")
struct ShutdownSignalTests {
    @Test func removedActionsDoNotRunAndDoNotPileUp() async throws {
        let signal = ShutdownSignal()
        let ran = AwaitableState<[String]>([])
        for round in 0..<1000 {
            // What every consumer of every recovery does: register, then remove when it ends.
            let token = signal.onTrigger { ran.update { $0.append("round \(round)") } }
            signal.remove(token)
        }
        #expect(signal.pendingActions == 0, "removed actions are forgotten")
        signal.onTrigger { ran.update { $0.append("live") } }
        #expect(signal.pendingActions == 1)
        signal.trigger()
        #expect(await ran.wait(until: { !$0.isEmpty }, timeout: .seconds(10)))
        #expect(ran.value == ["live"] && signal.pendingActions == 0)
        signal.onTrigger { ran.update { $0.append("late") } }
        #expect(await ran.wait(until: { $0.count == 2 }, timeout: .seconds(10)), "after the trigger an action runs at once")
        #expect(ran.value == ["live", "late"])
    }
}

@Suite("Waiting without polling")
struct AwaitableStateTests {
    @Test func aWaiterResumesWhenAnUpdateMeetsItsConditionAndNotBefore() async throws {
        let state = AwaitableState(0)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await state.wait { $0 >= 2 } }
            try await eventuallyWaiting(state, count: 1)
            state.update { $0 = 1 }
            // An update resumes the waiters it satisfies before it returns: one that still counts was not resumed.
            #expect(state.waiterCount == 1, "not resumed by a value that does not meet its condition")
            state.update { $0 = 2 }
            #expect(state.waiterCount == 0)
            try await group.waitForAll()
        }
        try await state.wait { $0 == 2 }  // already met: returns at once
        #expect(state.waiterCount == 0)
    }

    @Test func aCancelledWaiterThrowsAndIsForgotten() async throws {
        let state = AwaitableState(false)
        let waiter = Task { try await state.wait { $0 } }
        try await eventuallyWaiting(state, count: 1)
        waiter.cancel()
        await #expect(throws: CancellationError.self) { try await waiter.value }
        #expect(state.waiterCount == 0, "forgotten: nobody left to resume")
        state.update { $0 = true }
    }

    /// Polls (the waiter registers from another task) until `count` tasks wait on `state`.
    private func eventuallyWaiting<Value: Sendable>(_ state: AwaitableState<Value>, count: Int) async throws {
        guard try await eventually(pollEvery: .milliseconds(1), { state.waiterCount == count }) else {
            throw TestFailure("\(state.waiterCount) waiters, not \(count)")
        }
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
