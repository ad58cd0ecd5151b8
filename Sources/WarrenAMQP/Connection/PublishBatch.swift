import Synchronization

/// Collects the outcomes of a batch of publishes and resumes its caller once, when all are known.
final class PublishBatch: Sendable {
    private struct State {
        var results: [Result<Void, AMQPError>?]
        var remaining: Int
        var continuation: UnsafeContinuation<[Result<Void, AMQPError>], Never>?
    }

    private let state: Mutex<State>

    init(count: Int) {
        state = Mutex(State(results: Array(repeating: nil, count: count), remaining: count))
    }

    func wait() async -> [Result<Void, AMQPError>] {
        await withUnsafeContinuation { continuation in
            let done: [Result<Void, AMQPError>]? = state.withLock { state in
                if state.remaining == 0 { return state.results.map { $0! } }
                state.continuation = continuation
                return nil
            }
            if let done { continuation.resume(returning: done) }
        }
    }

    /// Records the outcome of the publish at `index`; the first outcome for an index wins.
    func complete(_ index: Int, _ result: Result<Void, AMQPError>) {
        let finished: (UnsafeContinuation<[Result<Void, AMQPError>], Never>, [Result<Void, AMQPError>])? =
            state.withLock { state in
                guard state.results[index] == nil else { return nil }
                state.results[index] = result
                state.remaining -= 1
                guard state.remaining == 0, let continuation = state.continuation else { return nil }
                state.continuation = nil
                return (continuation, state.results.map { $0! })
            }
        if let (continuation, results) = finished { continuation.resume(returning: results) }
    }
}
