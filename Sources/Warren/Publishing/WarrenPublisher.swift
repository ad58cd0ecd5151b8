import Foundation
import WarrenAMQP

/// Publishes typed messages through a transport: for services that only publish, and for handlers (through
/// ``MessageContext/publish(_:to:headers:)``) whose messages carry the correlation forward.
///
/// Every message gets a message id (returned), a timestamp, its codec's content type, its `type`, persistent
/// delivery, and the correlation and causation ids given. On RabbitMQ the publish is confirmed and `mandatory`, so a
/// message that reaches no queue is an error, never a silent loss.
public struct WarrenPublisher: Sendable {
    public let transport: any WarrenTransport
    public let codec: any MessageCodec
    /// Written as the AMQP `app_id`.
    public let appID: String?

    public init(transport: any WarrenTransport, codec: any MessageCodec = JSONMessageCodec(), appID: String? = nil) {
        self.transport = transport
        self.codec = codec
        self.appID = appID
    }

    /// Header carrying the id of the message whose handling caused this one.
    public static let causationHeader = "x-warren-causation-id"

    /// Publishes `message` and returns its message id once the transport confirmed it.
    /// - Parameters:
    ///   - destination: usually `.queue(name)` or `.exchange(name, routingKey:)`.
    ///   - correlationID: ties together every message of one business flow.
    ///   - causationID: the message whose handling caused this one.
    /// - Throws: the codec's error, or the transport's (for RabbitMQ: `AMQPError` `.unroutable`, `.nacked`, …).
    @discardableResult
    public func publish<M: WarrenMessage>(
        _ message: M, to destination: Destination, messageID: String = UUID().uuidString.lowercased(),
        correlationID: String? = nil, causationID: String? = nil, headers: AMQPTable = [:]
    ) async throws -> String {
        var headers = headers
        if let causationID { headers[Self.causationHeader] = .string(causationID) }
        let now = Date()
        headers[WarrenHeader.publishedAt] = .int64(Int64(now.timeIntervalSince1970 * 1000))
        let properties = AMQPProperties(
            contentType: codec.contentType, headers: headers, deliveryMode: .persistent,
            correlationID: correlationID, messageID: messageID, timestamp: now, type: M.messageType, appID: appID)
        try await transport.publish(try codec.encode(message), to: destination, properties: properties)
        return messageID
    }
}

extension MessageContext {
    /// Publishes a follow-up message whose correlation id is this message's (or its id), and whose causation id is
    /// this message's id.
    @discardableResult
    public func publish<M: WarrenMessage>(_ message: M, to destination: Destination, headers: AMQPTable = [:]) async throws -> String {
        guard let publisher else { throw WarrenError(.nothingToConsume, "this context has no publisher") }
        return try await publisher.publish(
            message, to: destination, correlationID: correlationID ?? messageID, causationID: messageID, headers: headers)
    }
}
