import Testing
import WarrenTestSupport

@testable import Warren

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

    @Test func aTimedWaitSaysWhetherTheConditionWasMetInTime() async throws {
        let state = AwaitableState(0)
        let clock = ContinuousClock()
        let started = clock.now
        #expect(await state.wait(until: { $0 == 1 }, timeout: .milliseconds(50)) == false)
        #expect(clock.now - started >= .milliseconds(50))
        try await withThrowingTaskGroup(of: Bool.self) { group in
            group.addTask { await state.wait(until: { $0 == 1 }, timeout: .seconds(10)) }
            try await eventuallyWaiting(state, count: 1)
            state.update { $0 = 1 }
            #expect(try await group.next() == true, "met within its time")
        }
    }

    @Test func theShutdownSignalWakesItsWaitersAndAnInFlightCountItsIdleWaiter() async throws {
        let signal = ShutdownSignal()
        let waiter = Task { try await signal.wait() }
        signal.trigger()
        try await waiter.value
        let inFlight = InFlightCounter()
        inFlight.enter()
        try await withThrowingTaskGroup(of: Bool.self) { group in
            group.addTask { await inFlight.waitUntilIdle(timeout: .seconds(10)) }
            guard try await eventually(pollEvery: .milliseconds(1), { inFlight.waiterCount == 1 }) else {
                throw TestFailure("\(inFlight.waiterCount) waiters, not 1")
            }
            inFlight.leave()
            #expect(try await group.next() == true, "idle once the last handler left")
        }
        inFlight.enter()
        #expect(await inFlight.waitUntilIdle(timeout: .milliseconds(20)) == false)
    }
}
