import WarrenAMQP

/// What to do with a delivery before its handler runs, given how often it came back unsettled. Pure, like
/// ``FailureDecision``.
enum RedeliveryVerdict: Equatable {
    /// Hand it to its handler.
    case handle
    /// Classic queues: publish a copy carrying this count in `x-warren-redeliveries`, then ack the original, so the
    /// count survives a crash of the next attempt. From the second return on (`isolated`) the copy goes to the
    /// work queue's ``WarrenTopology/redeliveredQueue``, consumed one message at a time: a message that crashes its
    /// process again then takes no other message's count up with it.
    case reenqueue(returns: Int, isolated: Bool)
    /// Over the limit: to the dead letters without running the handler.
    case deadLetter(returns: Int, limit: Int)

    static func decide(redelivered: Bool, headers: AMQPTable, limit: Int?) -> RedeliveryVerdict {
        guard let limit else { return .handle }
        if let deliveryCount = headers.header(WarrenHeader.quorumDeliveryCount)?.int64Value {
            // A quorum queue counts every return itself.
            let returns = Int(clamping: max(0, deliveryCount))
            return returns > limit ? .deadLetter(returns: returns, limit: limit) : .handle
        }
        guard redelivered else { return .handle }
        let counted = Int(clamping: max(0, headers.header(WarrenHeader.redeliveries)?.int64Value ?? 0))
        let returns = counted == Int.max ? counted : counted + 1
        return returns > limit
            ? .deadLetter(returns: returns, limit: limit) : .reenqueue(returns: returns, isolated: returns >= 2)
    }
}
