/// How one delivery was settled; given to a worker's observer (metrics, tests) after each delivery.
public struct SettlementEvent: Sendable {
    public enum Outcome: Sendable, Equatable {
        case acked
        /// A copy waits in the delay queue for `delay`; it comes back as attempt `nextAttempt`.
        case retried(delay: Duration, nextAttempt: Int)
        case deadLettered(DeadLetterReason)
        /// Returned to the queue untouched (shutdown, or a copy the broker did not confirm).
        case requeued

        /// The name used in logs and metrics: `ack`, `retry`, `dead-letter`, `requeue`.
        public var name: String {
            switch self {
            case .acked: "ack"
            case .retried: "retry"
            case .deadLettered: "dead-letter"
            case .requeued: "requeue"
            }
        }
    }

    public var messageID: String?
    public var messageType: String?
    public var queue: String
    /// The attempt that was settled, 1-based.
    public var attempt: Int
    public var outcome: Outcome
    /// How long handling and settling took.
    public var duration: Duration
    /// How long the message waited in the queue (from its AMQP timestamp), when known.
    public var queueWait: Duration?
    /// The failure, when there was one.
    public var error: String?
    /// Acknowledged without running the handler: its idempotency store had already recorded the message id.
    public var duplicate: Bool = false
}
