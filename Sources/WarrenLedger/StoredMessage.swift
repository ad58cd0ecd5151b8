import Foundation
import WarrenAMQP

/// A message as the ledger holds it: the body, and the AMQP properties with every header's AMQP type, so that what a
/// replay publishes is what the queue held (an `int8` stays an `int8`, a table a table, bytes bytes).
public struct StoredMessage: Sendable, Equatable {
    public var body: [UInt8]
    public var properties: AMQPProperties

    public init(body: [UInt8], properties: AMQPProperties) {
        self.body = body
        self.properties = properties
    }

    /// The properties as JSON text (snake_case keys; each header `{"type": …, "value": …}`), as the stores keep them.
    /// - Throws: `EncodingError` (not for any value an AMQP message can carry).
    public func encodedProperties() throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        encoder.nonConformingFloatEncodingStrategy = .convertToString(
            positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return String(decoding: try encoder.encode(StoredProperties(properties)), as: UTF8.self)
    }

    /// The message of `encodedProperties` (from ``encodedProperties()``) and a base64 body.
    /// - Throws: `DecodingError` for text ``encodedProperties()`` did not write or a body that is not base64.
    public init(encodedProperties: String, base64Body: String) throws {
        let decoder = JSONDecoder()
        decoder.nonConformingFloatDecodingStrategy = .convertFromString(
            positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        properties = try decoder.decode(StoredProperties.self, from: Data(encodedProperties.utf8)).amqp
        guard let body = Data(base64Encoded: base64Body) else {
            throw DecodingError.dataCorrupted(
                .init(codingPath: [], debugDescription: "a stored body that is not base64"))
        }
        self.body = [UInt8](body)
    }
}

/// ``AMQPProperties`` in JSON: every field optional, the timestamp in whole seconds, the headers typed.
private struct StoredProperties: Codable {
    var contentType: String?
    var contentEncoding: String?
    var headers: [String: TypedValue]?
    var deliveryMode: UInt8?
    var priority: UInt8?
    var correlationID: String?
    var replyTo: String?
    var expiration: String?
    var messageID: String?
    var timestamp: Int64?
    var type: String?
    var userID: String?
    var appID: String?
    var clusterID: String?

    enum CodingKeys: String, CodingKey {
        case headers, priority, expiration, timestamp, type
        case contentType = "content_type"
        case contentEncoding = "content_encoding"
        case deliveryMode = "delivery_mode"
        case correlationID = "correlation_id"
        case replyTo = "reply_to"
        case messageID = "message_id"
        case userID = "user_id"
        case appID = "app_id"
        case clusterID = "cluster_id"
    }

    init(_ properties: AMQPProperties) {
        contentType = properties.contentType
        contentEncoding = properties.contentEncoding
        headers = properties.headers?.mapValues(TypedValue.init)
        deliveryMode = properties.deliveryMode?.rawValue
        priority = properties.priority
        correlationID = properties.correlationID
        replyTo = properties.replyTo
        expiration = properties.expiration
        messageID = properties.messageID
        timestamp = properties.timestamp.flatMap { Int64(exactly: $0.timeIntervalSince1970.rounded(.down)) }
        type = properties.type
        userID = properties.userID
        appID = properties.appID
        clusterID = properties.clusterID
    }

    var amqp: AMQPProperties {
        AMQPProperties(
            contentType: contentType, contentEncoding: contentEncoding, headers: headers?.mapValues(\.value),
            deliveryMode: deliveryMode.flatMap(AMQPProperties.DeliveryMode.init(rawValue:)), priority: priority,
            correlationID: correlationID, replyTo: replyTo, expiration: expiration, messageID: messageID,
            timestamp: timestamp.map { Date(timeIntervalSince1970: Double($0)) }, type: type, userID: userID,
            appID: appID,
            clusterID: clusterID)
    }
}

/// One header value with its AMQP type: `{"type": "int64", "value": 3}`; bytes in base64, a decimal as
/// `{"scale", "value"}`, a timestamp in seconds, `void` without a value.
private struct TypedValue: Codable {
    var value: AMQPFieldValue

    init(_ value: AMQPFieldValue) { self.value = value }

    enum CodingKeys: String, CodingKey { case type, value, scale }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        switch value {
        case .bool(let v):
            try container.encode("bool", forKey: .type)
            try container.encode(v, forKey: .value)
        case .int8(let v):
            try container.encode("int8", forKey: .type)
            try container.encode(v, forKey: .value)
        case .uint8(let v):
            try container.encode("uint8", forKey: .type)
            try container.encode(v, forKey: .value)
        case .int16(let v):
            try container.encode("int16", forKey: .type)
            try container.encode(v, forKey: .value)
        case .uint16(let v):
            try container.encode("uint16", forKey: .type)
            try container.encode(v, forKey: .value)
        case .int32(let v):
            try container.encode("int32", forKey: .type)
            try container.encode(v, forKey: .value)
        case .uint32(let v):
            try container.encode("uint32", forKey: .type)
            try container.encode(v, forKey: .value)
        case .int64(let v):
            try container.encode("int64", forKey: .type)
            try container.encode(v, forKey: .value)
        case .uint64(let v):
            try container.encode("uint64", forKey: .type)
            try container.encode(v, forKey: .value)
        case .float(let v):
            try container.encode("float", forKey: .type)
            try container.encode(v, forKey: .value)
        case .double(let v):
            try container.encode("double", forKey: .type)
            try container.encode(v, forKey: .value)
        case .decimal(let scale, let v):
            try container.encode("decimal", forKey: .type)
            try container.encode(scale, forKey: .scale)
            try container.encode(v, forKey: .value)
        case .string(let v):
            try container.encode("string", forKey: .type)
            try container.encode(v, forKey: .value)
        case .bytes(let v):
            try container.encode("bytes", forKey: .type)
            try container.encode(Data(v).base64EncodedString(), forKey: .value)
        case .array(let v):
            try container.encode("array", forKey: .type)
            try container.encode(v.map(TypedValue.init), forKey: .value)
        case .timestamp(let v):
            try container.encode("timestamp", forKey: .type)
            try container.encode(v, forKey: .value)
        case .table(let v):
            try container.encode("table", forKey: .type)
            try container.encode(v.mapValues(TypedValue.init), forKey: .value)
        case .void: try container.encode("void", forKey: .type)
        }
    }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let type = try container.decode(String.self, forKey: .type)
        switch type {
        case "bool": value = .bool(try container.decode(Bool.self, forKey: .value))
        case "int8": value = .int8(try container.decode(Int8.self, forKey: .value))
        case "uint8": value = .uint8(try container.decode(UInt8.self, forKey: .value))
        case "int16": value = .int16(try container.decode(Int16.self, forKey: .value))
        case "uint16": value = .uint16(try container.decode(UInt16.self, forKey: .value))
        case "int32": value = .int32(try container.decode(Int32.self, forKey: .value))
        case "uint32": value = .uint32(try container.decode(UInt32.self, forKey: .value))
        case "int64": value = .int64(try container.decode(Int64.self, forKey: .value))
        case "uint64": value = .uint64(try container.decode(UInt64.self, forKey: .value))
        case "float": value = .float(try container.decode(Float.self, forKey: .value))
        case "double": value = .double(try container.decode(Double.self, forKey: .value))
        case "decimal":
            value = .decimal(
                scale: try container.decode(UInt8.self, forKey: .scale),
                value: try container.decode(UInt32.self, forKey: .value))
        case "string": value = .string(try container.decode(String.self, forKey: .value))
        case "bytes":
            guard let bytes = Data(base64Encoded: try container.decode(String.self, forKey: .value)) else {
                throw DecodingError.dataCorruptedError(
                    forKey: .value, in: container, debugDescription: "bytes that are not base64")
            }
            value = .bytes([UInt8](bytes))
        case "array": value = .array(try container.decode([TypedValue].self, forKey: .value).map(\.value))
        case "timestamp": value = .timestamp(try container.decode(UInt64.self, forKey: .value))
        case "table": value = .table(try container.decode([String: TypedValue].self, forKey: .value).mapValues(\.value))
        case "void": value = .void
        default:
            throw DecodingError.dataCorruptedError(
                forKey: .type, in: container, debugDescription: "unknown header type \(type)")
        }
    }
}
