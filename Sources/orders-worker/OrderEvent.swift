import Warren

/// One event of an order (`{"orderId": "…", "seq": 1}`): the `order-events` flow handles an order's events in `seq`
/// order, one at a time, keyed by `orderId`. A client in another language publishes it to the exchange `order-events`
/// with the order id in the header `x-warren-partition-key` and the type `order.event`.
struct OrderEvent: PartitionedMessage {
    static var messageType: String { "order.event" }
    var orderId: String
    var seq: Int
    var partitionKey: String { orderId }
}
