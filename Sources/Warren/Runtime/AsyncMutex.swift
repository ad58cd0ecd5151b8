import DequeModule
import Synchronization

/// A lock for async code: one holder at a time, the others wait their turn (in order) without blocking a thread.
package final class AsyncMutex: Sendable {
    private let state = Mutex<(held: Bool, waiters: Deque<CheckedContinuation<Void, Never>>)>((false, []))

    package init() {}

    package func withLock<T>(_ body: () async throws -> T) async rethrows -> T {
        await acquire()
        defer { release() }
        return try await body()
    }

    private func acquire() async {
        await withCheckedContinuation { continuation in
            let acquired = state.withLock { state -> Bool in
                if state.held {
                    state.waiters.append(continuation)
                    return false
                }
                state.held = true
                return true
            }
            if acquired { continuation.resume() }
        }
    }

    private func release() {
        let next = state.withLock { state -> CheckedContinuation<Void, Never>? in
            if let next = state.waiters.popFirst() { return next }
            state.held = false
            return nil
        }
        next?.resume()
    }
}
