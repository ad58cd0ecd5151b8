/// What the I/O thread keeps for one open channel: the synchronous methods waiting for their replies, the content
/// being assembled, the consumers, the publishes waiting for confirms and the acks it holds. Confined to the thread.
final class ChannelBookkeeping {
    let id: UInt16
    let handle: ChannelHandle
    /// Sent one at a time, head first: AMQP allows one outstanding synchronous method per channel.
    var pendingMethods: [PendingMethod] = []
    var assembler = ContentAssembler<ContentMethod>()
    var consumers: [String: ConsumerSink] = [:]
    /// Set once the channel is in confirm mode.
    var confirms: ConfirmTracker<PublishRecord>?
    var confirmTimeout: Duration?
    var acks = AckCoalescer()
    /// `channel.close` was sent: nothing more is accepted for this channel.
    var closing = false
    /// The last delivery tag of a consumer that acks.
    var lastDeliveryTag: UInt64 = 0

    init(handle: ChannelHandle) {
        self.id = handle.id
        self.handle = handle
    }

    /// Deliveries the broker counts as unacknowledged: not yet settled on the wire (acks this thread holds included).
    var unsettledOnWire: UInt64 { (lastDeliveryTag + 1) - min(acks.nextUnsettled, lastDeliveryTag + 1) }

    var prefetch: UInt16 { handle.prefetch.load(ordering: .relaxed) }
}

/// What a confirm-mode channel remembers about a publish until its confirm arrives.
struct PublishRecord {
    var waiter: PublishWaiter
    var mandatory: Bool
    var exchange: String
    var routingKey: String
    var body: [UInt8]
    /// When the wait for the broker's confirm gives up; `nil` waits as long as the connection lives.
    var deadline: ContinuousClock.Instant?
}

struct PendingMethod {
    var method: ChannelMethod
    var completion: (Result<MethodReply, AMQPError>) -> Void
}

/// The methods that carry content (a header frame and body frames follow them).
enum ContentMethod {
    case deliver(consumerTag: String, deliveryTag: UInt64, redelivered: Bool, exchange: String, routingKey: String)
    case returned(replyCode: UInt16, replyText: String, exchange: String, routingKey: String)
    case getOk(deliveryTag: UInt64, redelivered: Bool, exchange: String, routingKey: String, messageCount: UInt32)
}
