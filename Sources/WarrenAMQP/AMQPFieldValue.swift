/// A value in an AMQP 0-9-1 field table: message headers and the `arguments` of topology methods.
///
/// Every type of the field-table grammar has a case, so a table read from the wire can be written back unchanged.
/// RabbitMQ itself understands the signed integers, `float`, `double`, `decimal`, strings, byte arrays, arrays,
/// timestamps, nested tables, `bool` and `void`; the unsigned 16, 32 and 64-bit kinds are kept for completeness
/// (other brokers and librabbitmq know them) but RabbitMQ may reject them in arguments.
public enum AMQPFieldValue: Sendable, Hashable {
    case bool(Bool)
    case int8(Int8)
    case uint8(UInt8)
    case int16(Int16)
    case uint16(UInt16)
    case int32(Int32)
    case uint32(UInt32)
    case int64(Int64)
    case uint64(UInt64)
    case float(Float)
    case double(Double)
    /// A decimal number: `value` divided by 10 to the power `scale`.
    case decimal(scale: UInt8, value: UInt32)
    /// A long string (kind `S`) that holds valid UTF-8. A long string that is not valid UTF-8 is read as `.bytes`.
    case string(String)
    /// A byte array (kind `x`).
    case bytes([UInt8])
    case array([AMQPFieldValue])
    /// A timestamp in whole seconds since the Unix epoch (kind `T`).
    case timestamp(UInt64)
    case table(AMQPTable)
    /// No value (kind `V`).
    case void
}

/// An AMQP field table. Keys are at most 128 bytes on the wire; when a table read from the wire repeats a key,
/// the first occurrence wins.
public typealias AMQPTable = [String: AMQPFieldValue]

extension AMQPFieldValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByBooleanLiteral,
    ExpressibleByFloatLiteral, ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral
{
    public init(stringLiteral value: String) { self = .string(value) }
    /// Integer literals become `.int64`, the widest signed integer RabbitMQ understands (`l`).
    public init(integerLiteral value: Int64) { self = .int64(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(floatLiteral value: Double) { self = .double(value) }
    public init(arrayLiteral elements: AMQPFieldValue...) { self = .array(elements) }
    public init(dictionaryLiteral elements: (String, AMQPFieldValue)...) {
        self = .table(AMQPTable(elements, uniquingKeysWith: { first, _ in first }))
    }
}

extension AMQPFieldValue {
    /// The value as a string when it is a string, or bytes that are valid UTF-8.
    public var stringValue: String? {
        switch self {
        case .string(let value): return value
        case .bytes(let bytes): return String(validating: bytes, as: UTF8.self)
        default: return nil
        }
    }

    /// The value as an `Int64` when it is an integer of any width that fits.
    public var int64Value: Int64? {
        switch self {
        case .int8(let v): return Int64(v)
        case .uint8(let v): return Int64(v)
        case .int16(let v): return Int64(v)
        case .uint16(let v): return Int64(v)
        case .int32(let v): return Int64(v)
        case .uint32(let v): return Int64(v)
        case .int64(let v): return v
        case .uint64(let v): return Int64(exactly: v)
        case .timestamp(let v): return Int64(exactly: v)
        default: return nil
        }
    }

    public var tableValue: AMQPTable? {
        if case .table(let t) = self { return t }
        return nil
    }

    public var arrayValue: [AMQPFieldValue]? {
        if case .array(let a) = self { return a }
        return nil
    }
}

extension AMQPFieldValue: CustomStringConvertible {
    /// The value as a person reads it: strings in quotes, numbers and booleans as they are, `[…]` for arrays,
    /// `{key: value}` for tables, the size of a byte array.
    public var description: String {
        switch self {
        case .bool(let value): "\(value)"
        case .int8(let value): "\(value)"
        case .uint8(let value): "\(value)"
        case .int16(let value): "\(value)"
        case .uint16(let value): "\(value)"
        case .int32(let value): "\(value)"
        case .uint32(let value): "\(value)"
        case .int64(let value): "\(value)"
        case .uint64(let value): "\(value)"
        case .float(let value): "\(value)"
        case .double(let value): "\(value)"
        case .decimal(let scale, let value): "\(value)e-\(scale)"
        case .string(let value): "\"\(value)\""
        case .bytes(let bytes): "<\(bytes.count) bytes>"
        case .array(let values): "[" + values.map(\.description).joined(separator: ", ") + "]"
        case .timestamp(let seconds): "timestamp \(seconds)"
        case .table(let table):
            "{" + table.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: ", ") + "}"
        case .void: "void"
        }
    }
}
