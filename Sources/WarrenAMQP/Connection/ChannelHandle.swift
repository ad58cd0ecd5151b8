import Synchronization

/// A channel as the tasks that use it hold it: its identity, and what they read without asking the I/O thread.
///
/// Commands name their channel by this object, never by number alone: a number is reused once its channel closes.
final class ChannelHandle: Sendable {
    let id: UInt16
    private let closedError = Mutex<AMQPError?>(nil)
    /// The prefetch count last set with `basic.qos` (0: none, unlimited). Written by the I/O thread.
    let prefetch = Atomic<UInt16>(0)

    init(id: UInt16) {
        self.id = id
    }

    /// How many plain acks may wait for the I/O thread before one wakes it (see
    /// ``IOLoopStateMachine/lazyAckLimit(prefetch:)``).
    var lazyAckLimit: Int? { IOLoopStateMachine.lazyAckLimit(prefetch: prefetch.load(ordering: .relaxed)) }

    var closeReason: AMQPError? { closedError.withLock { $0 } }

    /// Records why the channel closed; the first reason stays.
    func markClosed(_ error: AMQPError) {
        closedError.withLock { if $0 == nil { $0 = error } }
    }
}
