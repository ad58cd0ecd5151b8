import Synchronization

/// Lets at most `limit` handlers run at once on a queue; `acquire` suspends (never blocks a thread) when full.
final class ConcurrencyLimiter: Sendable {
    private struct State {
        var available: Int
        var waiters: [CheckedContinuation<Void, Never>] = []
    }

    private let state: Mutex<State>

    init(limit: Int) {
        state = Mutex(State(available: limit))
    }

    func acquire() async {
        let granted = state.withLock { state -> Bool in
            guard state.available > 0, state.waiters.isEmpty else { return false }
            state.available -= 1
            return true
        }
        if granted { return }  // the usual case under a limit that is not reached: no continuation
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let granted = state.withLock { state -> Bool in
                if state.available > 0 {
                    state.available -= 1
                    return true
                }
                state.waiters.append(continuation)
                return false
            }
            if granted { continuation.resume() }
        }
    }

    func release() {
        let next = state.withLock { state -> CheckedContinuation<Void, Never>? in
            if state.waiters.isEmpty {
                state.available += 1
                return nil
            }
            return state.waiters.removeFirst()
        }
        next?.resume()
    }
}

struct HandlerTimedOut: Error {
    var limit: Duration
}

/// Runs `operation`, cancelling it and throwing ``HandlerTimedOut`` once `limit` has passed.
func withTimeout(_ limit: Duration?, _ operation: @escaping @Sendable () async throws -> Void) async throws {
    guard let limit else { return try await operation() }
    try await withThrowingTaskGroup(of: Bool.self) { group in
        group.addTask {
            try await operation()
            return true
        }
        group.addTask {
            try await Task.sleep(for: limit)
            return false
        }
        defer { group.cancelAll() }
        guard let finished = try await group.next() else { return }
        if !finished { throw HandlerTimedOut(limit: limit) }
    }
}
