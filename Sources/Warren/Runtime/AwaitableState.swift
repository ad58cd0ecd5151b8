import Synchronization

/// A value behind a lock that tasks can wait on until it meets a condition, without polling: whoever changes it
/// through ``update(_:)`` resumes the waiters whose condition now holds.
///
/// Changing the value costs one lock and, while nobody waits, nothing more: it may sit on a per-delivery path.
package final class AwaitableState<Value: Sendable>: Sendable {
    private struct Waiter {
        var isMet: @Sendable (Value) -> Bool
        var continuation: CheckedContinuation<Void, any Error>
    }

    private struct State {
        var value: Value
        var waiters: [Int: Waiter] = [:]
        var nextWaiter = 0
    }

    private let state: Mutex<State>

    package init(_ value: Value) {
        state = Mutex(State(value: value))
    }

    package var value: Value { state.withLock { $0.value } }

    /// Tasks waiting now (what a test reads to see a waiter still waits, or was forgotten).
    package var waiterCount: Int { state.withLock { $0.waiters.count } }

    /// Changes the value and resumes every waiter whose condition it now meets; returns what `change` returns.
    @discardableResult
    package func update<Result>(_ change: (inout Value) -> Result) -> Result {
        let (result, met) = state.withLock { state -> (Result, [CheckedContinuation<Void, any Error>]) in
            let result = change(&state.value)
            guard !state.waiters.isEmpty else { return (result, []) }
            var met: [CheckedContinuation<Void, any Error>] = []
            for (id, waiter) in state.waiters where waiter.isMet(state.value) {
                met.append(waiter.continuation)
                state.waiters[id] = nil
            }
            return (result, met)
        }
        for continuation in met { continuation.resume() }
        return result
    }

    /// Returns once the value meets `isMet`, at once when it already does.
    /// - Throws: `CancellationError` when the waiting task is cancelled first.
    package func wait(until isMet: @escaping @Sendable (Value) -> Bool) async throws {
        let id = state.withLock { state in
            defer { state.nextWaiter += 1 }
            return state.nextWaiter
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                // Under the lock, so that a cancellation either came before (and is seen here) or finds the waiter.
                let now: Swift.Result<Void, any Error>? = state.withLock { state in
                    if isMet(state.value) { return .success(()) }
                    if Task.isCancelled { return .failure(CancellationError()) }
                    state.waiters[id] = Waiter(isMet: isMet, continuation: continuation)
                    return nil
                }
                if let now { continuation.resume(with: now) }
            }
        } onCancel: {
            state.withLock { $0.waiters.removeValue(forKey: id) }?.continuation.resume(throwing: CancellationError())
        }
    }

    /// Like ``wait(until:)``, but gives up after `timeout`.
    /// - Returns: whether the value met `isMet` in time; `false` also when the waiting task was cancelled.
    package func wait(until isMet: @escaping @Sendable (Value) -> Bool, timeout: Duration) async -> Bool {
        if isMet(value) { return true }
        return await withTaskGroup(of: Bool.self) { group in
            group.addTask { (try? await self.wait(until: isMet)) != nil }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return false
            }
            let first = await group.next() ?? false
            group.cancelAll()
            return first
        }
    }
}
