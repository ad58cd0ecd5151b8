/// A request from a Swift task to the connection's I/O thread.
enum IOCommand: Sendable {
    case openChannel(UnsafeContinuation<ChannelHandle, any Error>)
    // Commands name their channel by its handle, not its number: a number is reused once its channel closes, and an
    // ack or publish meant for the old channel must never reach the new one.
    case method(channel: ChannelHandle, ChannelMethod, UnsafeContinuation<MethodReply, any Error>)
    case consume(channel: ChannelHandle, ChannelMethod, ConsumerSink, UnsafeContinuation<MethodReply, any Error>)
    case publish(channel: ChannelHandle, AMQPOutboundMessage, PublishWaiter)
    case settle(channel: ChannelHandle, SettlementMethod)
    case close(UnsafeContinuation<Void, Never>?)
}

/// How the application settles a delivery.
enum SettlementMethod: Sendable {
    case ack(deliveryTag: UInt64, multiple: Bool)
    case nack(deliveryTag: UInt64, multiple: Bool, requeue: Bool)
    case reject(deliveryTag: UInt64, requeue: Bool)
}

/// Who waits for a publish: one task, one slot of a batch, or nobody.
enum PublishWaiter: Sendable {
    case none
    case single(UnsafeContinuation<Void, any Error>)
    case batch(PublishBatch, index: Int)

    func complete(_ result: Result<Void, AMQPError>) {
        switch self {
        case .none: break
        case .single(let continuation): continuation.resume(with: result.mapError { $0 as any Error })
        case .batch(let batch, let index): batch.complete(index, result)
        }
    }
}
