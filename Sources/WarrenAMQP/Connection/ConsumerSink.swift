import DequeModule
import Synchronization

/// The buffer between the I/O thread, which appends deliveries of one consumer, and the task iterating it.
///
/// Bounded by the broker: with a prefetch of N the broker never has more than N unacknowledged deliveries out, so
/// this buffer never holds more than N.
final class ConsumerSink: Sendable {
    private struct State {
        var buffer = Deque<InboundMessage>()
        var waiter: UnsafeContinuation<InboundMessage?, any Error>?
        /// Set once the consumer ended: `nil` error for a normal end (cancelled by the client).
        var ended: AMQPError?? = nil
    }

    private let state = Mutex(State())
    /// What the consuming task took out of `state` in one go and has not returned yet, oldest first. Only that task
    /// touches it, so its lock is never contended: the lock the I/O thread shares is taken once per burst, not once
    /// per delivery.
    private let taken = Mutex(Deque<InboundMessage>())

    /// Whether the broker expects acks for these deliveries (not `noAck`).
    let acknowledges: Bool

    init(acknowledges: Bool = true) {
        self.acknowledges = acknowledges
    }

    /// Called on the I/O thread. Buffers the message; returns `true` when a task waits for it, in which case the I/O
    /// thread calls ``wake()`` once it has read what the socket holds, so that a burst costs the waiting task one
    /// resumption rather than one per message.
    func yield(_ message: InboundMessage) -> Bool {
        receivedCount.add(1, ordering: .relaxed)
        return state.withLock { state in
            guard state.ended == nil else { return false }
            state.buffer.append(message)
            return state.waiter != nil && state.buffer.count == 1
        }
    }

    /// Called on the I/O thread: hands the waiting task what is ready.
    func wake() {
        let resumption = state.withLock {
            state -> (UnsafeContinuation<InboundMessage?, any Error>, Result<InboundMessage?, any Error>)? in
            guard let waiter = state.waiter, let ready = Self.ready(&state) else { return nil }
            state.waiter = nil
            return (waiter, ready)
        }
        if let (waiter, ready) = resumption {
            IOStatistics.count(IOStatistics.consumerWakeups)
            waiter.resume(with: ready)
        }
    }

    /// Ends the sequence after what is buffered: normally with `nil`, or by throwing `error`.
    func finish(_ error: AMQPError?) {
        let resumption = state.withLock {
            state -> (UnsafeContinuation<InboundMessage?, any Error>, Result<InboundMessage?, any Error>)? in
            guard state.ended == nil else { return nil }
            state.ended = .some(error)
            guard let waiter = state.waiter, let ready = Self.ready(&state) else { return nil }
            state.waiter = nil
            return (waiter, ready)
        }
        if let (waiter, ready) = resumption { waiter.resume(with: ready) }
    }

    /// Deliveries received so far (a consumer loop that took fewer has some waiting for it, buffered or handed to
    /// its resumed but not yet running task).
    var received: Int { receivedCount.load(ordering: .relaxed) }
    private let receivedCount = Atomic<Int>(0)

    /// The next message, waiting for one when none is buffered.
    /// - Throws: `CancellationError` once the calling task is cancelled, even with messages buffered (they stay
    ///   unsettled and return to the queue with the channel), so a cancelled consumer loop ends instead of handling
    ///   what the broker keeps sending.
    func next() async throws -> InboundMessage? {
        try Task.checkCancellation()
        if let message = taken.withLock({ $0.popFirst() }) { return message }
        // Take everything buffered, handing the I/O thread the (empty) storage of the previous batch in exchange.
        var batch = taken.withLock { taken in
            var spare = Deque<InboundMessage>()
            swap(&taken, &spare)
            return spare
        }
        let ready = state.withLock { state -> Result<InboundMessage?, any Error>? in
            guard !state.buffer.isEmpty else { return Self.ready(&state) }
            swap(&state.buffer, &batch)
            return .success(batch.removeFirst())
        }
        taken.withLock { swap(&$0, &batch) }
        if let ready { return try ready.get() }
        return try await withTaskCancellationHandler {
            try await withUnsafeThrowingContinuation { (continuation: UnsafeContinuation<InboundMessage?, any Error>) in
                let immediate: Result<InboundMessage?, any Error>? = state.withLock { state in
                    if let ready = Self.ready(&state) { return ready }
                    if Task.isCancelled { return .failure(CancellationError()) }
                    state.waiter = continuation
                    return nil
                }
                if let immediate { continuation.resume(with: immediate) }
            }
        } onCancel: {
            let waiter = state.withLock { state in
                defer { state.waiter = nil }
                return state.waiter
            }
            waiter?.resume(throwing: CancellationError())
        }
    }

    /// A buffered message, or the end of the sequence; `nil` when the caller has to wait.
    private static func ready(_ state: inout State) -> Result<InboundMessage?, any Error>? {
        if let message = state.buffer.popFirst() { return .success(message) }
        if let ended = state.ended { return ended.map { .failure($0) } ?? .success(nil) }
        return nil
    }
}
