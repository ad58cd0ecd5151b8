import Synchronization

/// The graceful-shutdown trigger of a worker: once triggered, consumers are cancelled and no new handler starts.
final class ShutdownSignal: Sendable {
    private struct State {
        var triggered = false
        var nextID = 0
        var actions: [Int: @Sendable () async -> Void] = [:]
    }

    private let state = Mutex(State())

    var isTriggered: Bool { state.withLock { $0.triggered } }

    /// Runs `action` when the signal is triggered (at once if it already was), unless it was removed first.
    /// - Returns: a token for ``remove(_:)``.
    @discardableResult
    func onTrigger(_ action: @escaping @Sendable () async -> Void) -> Int {
        let (runNow, id) = state.withLock { state -> (Bool, Int) in
            state.nextID += 1
            if state.triggered { return (true, state.nextID) }
            state.actions[state.nextID] = action
            return (false, state.nextID)
        }
        if runNow { Task { await action() } }
        return id
    }

    /// Forgets an action that is no longer needed (its consumer ended), so that a worker reconnecting many times
    /// does not pile them up.
    func remove(_ token: Int) {
        _ = state.withLock { $0.actions.removeValue(forKey: token) }
    }

    /// Returns once the signal is triggered. - Throws: `CancellationError` when the waiting task is cancelled first.
    func wait() async throws {
        while !isTriggered { try await Task.sleep(for: .milliseconds(50)) }
    }

    func trigger() {
        let actions = state.withLock { state -> [@Sendable () async -> Void] in
            guard !state.triggered else { return [] }
            state.triggered = true
            defer { state.actions.removeAll() }
            return Array(state.actions.values)
        }
        for action in actions { Task { await action() } }
    }
}

/// Counts handlers in flight, so a shutdown can wait for them within its grace period.
final class InFlightCounter: Sendable {
    private let count = Mutex(0)

    func enter() { count.withLock { $0 += 1 } }
    func leave() { count.withLock { $0 -= 1 } }
    var current: Int { count.withLock { $0 } }

    /// Whether every handler finished within `timeout` (checked every 20 ms).
    func waitUntilIdle(timeout: Duration) async -> Bool {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        while current > 0 {
            guard clock.now < deadline else { return false }
            try? await Task.sleep(for: .milliseconds(20))
            if Task.isCancelled { return current == 0 }
        }
        return true
    }
}

struct GracePeriodExpired: Error {}
