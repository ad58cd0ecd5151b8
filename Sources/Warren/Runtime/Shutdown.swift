import Synchronization

/// The graceful-shutdown trigger of a worker: once triggered, consumers are cancelled and no new handler starts.
final class ShutdownSignal: Sendable {
    private struct Actions {
        var next = 0
        var pending: [Int: @Sendable () async -> Void] = [:]
    }

    private let triggered = AwaitableState(false)
    private let actions = Mutex(Actions())

    var isTriggered: Bool { triggered.value }

    /// Actions registered and not yet run or removed.
    var pendingActions: Int { actions.withLock { $0.pending.count } }

    /// Runs `action` when the signal is triggered (at once if it already was), unless it was removed first.
    /// - Returns: a token for ``remove(_:)``.
    @discardableResult
    func onTrigger(_ action: @escaping @Sendable () async -> Void) -> Int {
        let id = actions.withLock { actions in
            actions.next += 1
            actions.pending[actions.next] = action
            return actions.next
        }
        // Triggered before the action was registered: `trigger()` may have taken the actions already, or not yet.
        if isTriggered, let action = actions.withLock({ $0.pending.removeValue(forKey: id) }) { Task { await action() } }
        return id
    }

    /// Forgets an action that is no longer needed (its consumer ended), so that a worker reconnecting many times
    /// does not pile them up.
    func remove(_ token: Int) {
        _ = actions.withLock { $0.pending.removeValue(forKey: token) }
    }

    /// Returns once the signal is triggered.
    /// - Throws: `CancellationError` when the waiting task is cancelled first.
    func wait() async throws {
        try await triggered.wait { $0 }
    }

    func trigger() {
        let first = triggered.update { triggered in
            defer { triggered = true }
            return !triggered
        }
        guard first else { return }
        let due = actions.withLock { actions in
            defer { actions.pending.removeAll() }
            return Array(actions.pending.values)
        }
        for action in due { Task { await action() } }
    }
}

/// Counts handlers in flight, so a shutdown can wait for them within its grace period.
final class InFlightCounter: Sendable {
    private let count = AwaitableState(0)

    /// Counts a handler in; returns how many run now.
    @discardableResult
    func enter() -> Int {
        count.update { count in
            count += 1
            return count
        }
    }

    /// Counts a handler out; returns how many run now.
    @discardableResult
    func leave() -> Int {
        count.update { count in
            count -= 1
            return count
        }
    }

    var current: Int { count.value }

    /// Whether every handler finished within `timeout`.
    func waitUntilIdle(timeout: Duration) async -> Bool {
        await count.wait(until: { $0 == 0 }, timeout: timeout)
    }
}

struct GracePeriodExpired: Error {}
