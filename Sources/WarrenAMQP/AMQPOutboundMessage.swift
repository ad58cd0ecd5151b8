/// A message to publish, in Swift values: for ``AMQPChannel/publish(contentsOf:)``.
public struct AMQPOutboundMessage: Sendable {
    public var body: [UInt8]
    public var exchange: String
    public var routingKey: String
    /// When set, a message no queue receives is returned and its publish fails with ``AMQPError/Code/unroutable``
    /// (on a channel in confirm mode).
    public var mandatory: Bool
    public var properties: AMQPProperties

    public init(
        body: [UInt8], exchange: String = "", routingKey: String, mandatory: Bool = false,
        properties: AMQPProperties = AMQPProperties()
    ) {
        self.body = body
        self.exchange = exchange
        self.routingKey = routingKey
        self.mandatory = mandatory
        self.properties = properties
    }
}
