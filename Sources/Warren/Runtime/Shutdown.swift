/// The graceful-shutdown trigger of a worker: once triggered, consumers are cancelled (each consumer's run waits for
/// it beside its deliveries) and no new handler starts.
final class ShutdownSignal: Sendable {
    private let triggered = AwaitableState(false)

    var isTriggered: Bool { triggered.value }

    /// How many tasks wait for the signal now (one watcher per running consumer).
    var waiterCount: Int { triggered.waiterCount }

    /// Returns once the signal is triggered (at once if it already was).
    /// - Throws: `CancellationError` when the waiting task is cancelled first.
    func wait() async throws {
        try await triggered.wait { $0 }
    }

    /// Triggers the signal: every waiter resumes. Synchronous, so that `Worker.shutdown()` can be called from anywhere.
    func trigger() {
        triggered.update { $0 = true }
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

    /// How many tasks wait for the count to reach zero now.
    var waiterCount: Int { count.waiterCount }

    /// Whether every handler finished within `timeout`.
    func waitUntilIdle(timeout: Duration) async -> Bool {
        await count.wait(until: { $0 == 0 }, timeout: timeout)
    }
}

struct GracePeriodExpired: Error {}
