import Synchronization

/// The graceful-shutdown trigger of a worker: once triggered, consumers are cancelled and no new handler starts.
final class ShutdownSignal: Sendable {
    private struct State {
        var triggered = false
        var actions: [@Sendable () async -> Void] = []
    }

    private let state = Mutex(State())

    var isTriggered: Bool { state.withLock { $0.triggered } }

    /// Runs `action` when the signal is triggered (at once if it already was).
    func onTrigger(_ action: @escaping @Sendable () async -> Void) {
        let runNow = state.withLock { state -> Bool in
            if state.triggered { return true }
            state.actions.append(action)
            return false
        }
        if runNow { Task { await action() } }
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
            return state.actions
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
