import struct Foundation.Date

/// The basic (content) properties of an AMQP message. Every field is optional; `nil` means absent on the wire.
public struct AMQPProperties: Sendable, Hashable {
    /// MIME type of the body, e.g. `application/json`.
    public var contentType: String?
    /// Encoding of the body, e.g. `gzip`.
    public var contentEncoding: String?
    /// Application headers.
    public var headers: AMQPTable?
    /// Whether the broker writes the message to disk (on a durable queue).
    public var deliveryMode: DeliveryMode?
    /// Priority 0...9 for priority queues.
    public var priority: UInt8?
    public var correlationID: String?
    public var replyTo: String?
    /// Per-message TTL in milliseconds, as a decimal string (AMQP's own representation).
    public var expiration: String?
    public var messageID: String?
    /// Creation time, in whole seconds since the Unix epoch on the wire.
    public var timestamp: Date?
    /// The application's message type name (Warren routes on it).
    public var type: String?
    /// The authenticated user that published; RabbitMQ rejects a value different from the connection's user.
    public var userID: String?
    public var appID: String?
    public var clusterID: String?

    /// Delivery mode of a message.
    public enum DeliveryMode: UInt8, Sendable, Hashable {
        case transient = 1
        case persistent = 2
    }

    public init(
        contentType: String? = nil,
        contentEncoding: String? = nil,
        headers: AMQPTable? = nil,
        deliveryMode: DeliveryMode? = nil,
        priority: UInt8? = nil,
        correlationID: String? = nil,
        replyTo: String? = nil,
        expiration: String? = nil,
        messageID: String? = nil,
        timestamp: Date? = nil,
        type: String? = nil,
        userID: String? = nil,
        appID: String? = nil,
        clusterID: String? = nil
    ) {
        self.contentType = contentType
        self.contentEncoding = contentEncoding
        self.headers = headers
        self.deliveryMode = deliveryMode
        self.priority = priority
        self.correlationID = correlationID
        self.replyTo = replyTo
        self.expiration = expiration
        self.messageID = messageID
        self.timestamp = timestamp
        self.type = type
        self.userID = userID
        self.appID = appID
        self.clusterID = clusterID
    }
}
