import Foundation

/// Decodes `Decodable` values straight from a JSON body, several times cheaper than Foundation's `JSONDecoder` for
/// the shapes messages usually have (objects of strings, integers, doubles, booleans, arrays, nested objects and
/// ISO 8601 dates in their `…T…Z` form).
///
/// It never disagrees with `JSONDecoder` (with `.iso8601` dates, the `JSONMessageCodec` setup): whatever it is not
/// certain to read exactly as `JSONDecoder` would — invalid JSON, numbers that need a conversion (`1.0` or `1e2` as an
/// `Int`, any `Float` or `Decimal`), `Data`, `URL`, dates in other forms, duplicate keys, invalid UTF-8, very deep
/// nesting, `superDecoder()` — makes it give up, and ``decode(_:from:)`` returns `nil` so the caller asks
/// `JSONDecoder`. It gives up as well when decoding fails for any reason, so errors always come from `JSONDecoder`. A
/// type whose `init(from:)` catches an error and tries something else is still safe: giving up is recorded, not only
/// thrown.
enum JSONFastDecoder {
    /// The value, or `nil` when `JSONDecoder` has to decide.
    static func decode<T: Decodable>(_ type: T.Type, from body: [UInt8]) -> T? {
        body.withUnsafeBufferPointer { bytes -> T? in
            var parser = JSONParser(bytes: bytes)
            guard let root = parser.parseDocument() else { return nil }
            let session = DecodingSession()
            guard let value = try? session.decode(T.self, from: root, parent: nil, key: nil), !session.gaveUp else {
                return nil
            }
            return value
        }
    }
}

// MARK: - Parsing

/// A parsed JSON value. Numbers keep their text: they are converted only to the type asked for.
enum JSONNode {
    case null
    case bool(Bool)
    case number(String)
    case string(String)
    case array([JSONNode])
    case object([(key: String, value: JSONNode)])

    var kindName: String {
        switch self {
        case .null: "null"
        case .bool: "a boolean"
        case .number: "a number"
        case .string: "a string"
        case .array: "an array"
        case .object: "an object"
        }
    }
}

/// A strict RFC 8259 parser; `nil` for anything invalid or beyond ``maximumDepth``.
struct JSONParser {
    let bytes: UnsafeBufferPointer<UInt8>
    var position = 0
    static let maximumDepth = 256

    init(bytes: UnsafeBufferPointer<UInt8>) {
        self.bytes = bytes
    }

    mutating func parseDocument() -> JSONNode? {
        skipWhitespace()
        guard let node = parseValue(depth: 0) else { return nil }
        skipWhitespace()
        return position == bytes.count ? node : nil
    }

    mutating func skipWhitespace() {
        while position < bytes.count {
            switch bytes[position] {
            case 0x20, 0x09, 0x0A, 0x0D: position += 1
            default: return
            }
        }
    }

    private mutating func parseValue(depth: Int) -> JSONNode? {
        guard position < bytes.count, depth < Self.maximumDepth else { return nil }
        switch bytes[position] {
        case UInt8(ascii: "{"): return parseObject(depth: depth)
        case UInt8(ascii: "["): return parseArray(depth: depth)
        case UInt8(ascii: "\""): return parseString().map { .string($0) }
        case UInt8(ascii: "t"): return literal("true") ? .bool(true) : nil
        case UInt8(ascii: "f"): return literal("false") ? .bool(false) : nil
        case UInt8(ascii: "n"): return literal("null") ? .null : nil
        default: return parseNumber()
        }
    }

    private mutating func literal(_ word: StaticString) -> Bool {
        let count = word.utf8CodeUnitCount
        guard bytes.count - position >= count else { return false }
        for offset in 0..<count where bytes[position + offset] != word.utf8Start[offset] { return false }
        position += count
        return true
    }

    private mutating func parseObject(depth: Int) -> JSONNode? {
        var fields: [(key: String, value: JSONNode)] = []
        fields.reserveCapacity(8)
        let complete = parseMembers(closing: "}") {
            guard $0.position < $0.bytes.count, $0.bytes[$0.position] == UInt8(ascii: "\""), let key = $0.parseString()
            else { return false }
            // Which of two equal keys JSONDecoder reads is its business: leave such documents to it.
            for index in fields.indices where fields[index].key == key { return false }
            $0.skipWhitespace()
            guard $0.position < $0.bytes.count, $0.bytes[$0.position] == UInt8(ascii: ":") else { return false }
            $0.position += 1
            $0.skipWhitespace()
            guard let value = $0.parseValue(depth: depth + 1) else { return false }
            fields.append((key, value))
            return true
        }
        return complete ? .object(fields) : nil
    }

    private mutating func parseArray(depth: Int) -> JSONNode? {
        var elements: [JSONNode] = []
        let complete = parseMembers(closing: "]") {
            guard let element = $0.parseValue(depth: depth + 1) else { return false }
            elements.append(element)
            return true
        }
        return complete ? .array(elements) : nil
    }

    /// At an opening bracket: reads members with `member` (at a member's first byte) until `closing`, each separated
    /// by a comma; whether that went to the end without an error.
    private mutating func parseMembers(closing: Unicode.Scalar, _ member: (inout JSONParser) -> Bool) -> Bool {
        let close = UInt8(ascii: closing)
        position += 1
        skipWhitespace()
        if position < bytes.count, bytes[position] == close {
            position += 1
            return true
        }
        while true {
            skipWhitespace()
            guard member(&self) else { return false }
            skipWhitespace()
            guard position < bytes.count else { return false }
            if bytes[position] == UInt8(ascii: ",") {
                position += 1
            } else if bytes[position] == close {
                position += 1
                return true
            } else {
                return false
            }
        }
    }

    /// At an opening quote; `nil` for an invalid string, invalid UTF-8 or an escaped lone surrogate.
    private mutating func parseString() -> String? {
        position += 1
        let start = position
        var ascii = true
        while position < bytes.count {
            skipPlainASCII()
            guard position < bytes.count else { break }
            let byte = bytes[position]
            if byte == UInt8(ascii: "\"") {
                let raw = UnsafeBufferPointer(rebasing: bytes[start..<position])
                position += 1
                // ASCII is valid UTF-8 as it is; anything else is checked.
                return ascii ? String(decoding: raw, as: UTF8.self) : String(validating: raw, as: UTF8.self)
            }
            ascii = ascii && byte < 0x80
            if byte == UInt8(ascii: "\\") { return parseEscapedString(from: start) }
            if byte < 0x20 { return nil }
            position += 1
        }
        return nil
    }

    /// Moves over whole 8-byte words inside a string that hold only printable ASCII other than `"` and `\`, the
    /// usual content of a string, instead of testing each byte four times. A word with anything else (or a false
    /// alarm of the bit tests, which never miss) is left to the byte-by-byte loop.
    private mutating func skipPlainASCII() {
        guard let base = bytes.baseAddress else { return }
        let ones: UInt64 = 0x0101_0101_0101_0101
        let highs: UInt64 = 0x8080_8080_8080_8080
        func hasZeroByte(_ word: UInt64) -> Bool { (word &- ones) & ~word & highs != 0 }
        while bytes.count - position >= 8 {
            let word = UnsafeRawPointer(base + position).loadUnaligned(as: UInt64.self)
            let control = (word &- ones &* 0x20) & ~word & highs != 0  // some byte below 0x20
            if word & highs != 0 || control || hasZeroByte(word ^ (ones &* 0x22)) || hasZeroByte(word ^ (ones &* 0x5C))
            {
                return
            }
            position += 8
        }
    }

    private mutating func parseEscapedString(from start: Int) -> String? {
        var utf8 = Array(UnsafeBufferPointer(rebasing: bytes[start..<position]))
        while position < bytes.count {
            let byte = bytes[position]
            if byte == UInt8(ascii: "\"") {
                position += 1
                return String(validating: utf8, as: UTF8.self)
            }
            if byte < 0x20 { return nil }
            guard byte == UInt8(ascii: "\\") else {
                utf8.append(byte)
                position += 1
                continue
            }
            guard position + 1 < bytes.count else { return nil }
            let escape = bytes[position + 1]
            position += 2
            switch escape {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): utf8.append(escape)
            case UInt8(ascii: "b"): utf8.append(0x08)
            case UInt8(ascii: "f"): utf8.append(0x0C)
            case UInt8(ascii: "n"): utf8.append(0x0A)
            case UInt8(ascii: "r"): utf8.append(0x0D)
            case UInt8(ascii: "t"): utf8.append(0x09)
            case UInt8(ascii: "u"):
                guard let unit = hexUnit() else { return nil }
                var scalarValue = UInt32(unit)
                if (0xD800...0xDBFF).contains(unit) {
                    guard position + 1 < bytes.count, bytes[position] == UInt8(ascii: "\\"),
                        bytes[position + 1] == UInt8(ascii: "u")
                    else { return nil }
                    position += 2
                    guard let low = hexUnit(), (0xDC00...0xDFFF).contains(low) else { return nil }
                    scalarValue = 0x10000 + ((UInt32(unit) - 0xD800) << 10) + (UInt32(low) - 0xDC00)
                }
                guard let scalar = Unicode.Scalar(scalarValue) else { return nil }
                UTF8.encode(scalar) { utf8.append($0) }
            default:
                return nil
            }
        }
        return nil
    }

    private mutating func hexUnit() -> UInt16? {
        guard bytes.count - position >= 4 else { return nil }
        var value: UInt16 = 0
        for _ in 0..<4 {
            let byte = bytes[position]
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
            default: return nil
            }
            value = value << 4 | UInt16(digit)
            position += 1
        }
        return value
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`
    private mutating func parseNumber() -> JSONNode? {
        let start = position
        func digits() -> Int {
            let first = position
            while position < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[position]) {
                position += 1
            }
            return position - first
        }
        if position < bytes.count, bytes[position] == UInt8(ascii: "-") { position += 1 }
        guard position < bytes.count else { return nil }
        if bytes[position] == UInt8(ascii: "0") {
            position += 1
        } else if digits() == 0 {
            return nil
        }
        if position < bytes.count, bytes[position] == UInt8(ascii: ".") {
            position += 1
            guard digits() > 0 else { return nil }
        }
        if position < bytes.count, bytes[position] == UInt8(ascii: "e") || bytes[position] == UInt8(ascii: "E") {
            position += 1
            if position < bytes.count, bytes[position] == UInt8(ascii: "+") || bytes[position] == UInt8(ascii: "-") {
                position += 1
            }
            guard digits() > 0 else { return nil }
        }
        return .number(String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<position]), as: UTF8.self))
    }
}

// MARK: - Decoding

/// Shared by the decoders of one document: whether any of them gave up, and the conversions of values.
final class DecodingSession {
    var gaveUp = false

    func giveUp() -> JSONFastDecoderGaveUp {
        gaveUp = true
        return JSONFastDecoderGaveUp()
    }

    // A mismatch is an error JSONDecoder throws as well; its own error (with the full coding path) is the one a
    // caller sees, since any error ends in asking JSONDecoder.
    private func mismatch(_ type: Any.Type, _ node: JSONNode) -> DecodingError {
        DecodingError.typeMismatch(type, .init(codingPath: [], debugDescription: "found \(node.kindName)"))
    }

    func string(_ node: JSONNode) throws -> String {
        guard case .string(let value) = node else { throw mismatch(String.self, node) }
        return value
    }

    func bool(_ node: JSONNode) throws -> Bool {
        guard case .bool(let value) = node else { throw mismatch(Bool.self, node) }
        return value
    }

    func double(_ node: JSONNode) throws -> Double {
        guard case .number(let text) = node else { throw mismatch(Double.self, node) }
        // Overflow and underflow are JSONDecoder's to judge.
        guard let value = Double(text), value.isFinite,
            value != 0 || !text.contains(where: { ("1"..."9").contains($0) })
        else { throw giveUp() }
        return value
    }

    /// Plain integer text only (`-12`, not `1.0` or `1e2`, whose conversion is JSONDecoder's to decide).
    func integer<I: FixedWidthInteger>(_ node: JSONNode, as type: I.Type) throws -> I {
        guard case .number(let text) = node else { throw mismatch(I.self, node) }
        guard let value = I(text, radix: 10), I.isSigned || text.first != "-" else { throw giveUp() }
        return value
    }

    func date(_ node: JSONNode) throws -> Date {
        guard case .string(let text) = node else { throw mismatch(Date.self, node) }
        guard let seconds = Self.internetDateSeconds(text) else { throw giveUp() }
        return Date(timeIntervalSince1970: Double(seconds))
    }

    /// Seconds since 1970 of `YYYY-MM-DDTHH:MM:SSZ` (years 1970 to 9999, a valid calendar date); `nil` for any other
    /// text, however valid.
    static func internetDateSeconds(_ text: String) -> Int64? {
        var text = text
        return text.withUTF8 { internetDateSeconds(utf8: $0) }
    }

    private static func internetDateSeconds(utf8: UnsafeBufferPointer<UInt8>) -> Int64? {
        guard utf8.count == 20, utf8[4] == UInt8(ascii: "-"), utf8[7] == UInt8(ascii: "-"),
            utf8[10] == UInt8(ascii: "T"),
            utf8[13] == UInt8(ascii: ":"), utf8[16] == UInt8(ascii: ":"), utf8[19] == UInt8(ascii: "Z")
        else { return nil }
        func number(_ range: Range<Int>) -> Int? {
            var value = 0
            for index in range {
                let byte = utf8[index]
                guard (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) else { return nil }
                value = value * 10 + Int(byte - UInt8(ascii: "0"))
            }
            return value
        }
        guard let year = number(0..<4), let month = number(5..<7), let day = number(8..<10), let hour = number(11..<13),
            let minute = number(14..<16), let second = number(17..<19),
            (1970...9999).contains(year), (1...12).contains(month), hour < 24, minute < 60, second < 60
        else { return nil }
        let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
        let monthDays = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
        guard (1...monthDays[month - 1]).contains(day) else { return nil }
        // Days since 1970-01-01 in the proleptic Gregorian calendar (the days-from-civil algorithm).
        let y = month <= 2 ? year - 1 : year
        let era = y / 400
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        let days = era * 146_097 + dayOfEra - 719_468
        return Int64(days) * 86_400 + Int64(hour * 3600 + minute * 60 + second)
    }

    /// `node` as `T`: the types JSONDecoder reads in its own way are read here (dates only in the form `.iso8601`
    /// certainly reads the same) or given up on; the rest through their `init(from:)`.
    func decode<T: Decodable>(_ type: T.Type, from node: JSONNode, parent: NodeDecoder?, key: (any CodingKey)?) throws
        -> T
    {
        if let value = try decodeDirectly(T.self, from: node) { return value }
        return try T(from: NodeDecoder(node: node, session: self, parent: parent, key: key))
    }

    /// The value when `T` is one of the types read here rather than through `init(from:)`, else `nil`.
    func decodeDirectly<T: Decodable>(_ type: T.Type, from node: JSONNode) throws -> T? {
        if T.self == String.self { return try string(node) as? T }
        if T.self == Int.self { return try integer(node, as: Int.self) as? T }
        if T.self == Bool.self { return try bool(node) as? T }
        if T.self == Double.self { return try double(node) as? T }
        if T.self == Date.self { return try date(node) as? T }
        if T.self == Data.self || T.self == URL.self || T.self == Decimal.self || T.self == Float.self {
            throw giveUp()
        }
        return nil
    }
}

/// Thrown where the fast decoder is not certain to agree with `JSONDecoder`; also recorded in the session.
struct JSONFastDecoderGaveUp: Error {}

final class NodeDecoder: Decoder, SingleValueDecodingContainer {
    let node: JSONNode
    let session: DecodingSession
    let parent: NodeDecoder?
    let key: (any CodingKey)?

    init(node: JSONNode, session: DecodingSession, parent: NodeDecoder?, key: (any CodingKey)?) {
        self.node = node
        self.session = session
        self.parent = parent
        self.key = key
    }

    var codingPath: [any CodingKey] {
        var path: [any CodingKey] = []
        var decoder: NodeDecoder? = self
        while let current = decoder, let key = current.key {
            path.append(key)
            decoder = current.parent
        }
        return path.reversed()
    }

    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        guard case .object(let fields) = node else {
            throw DecodingError.typeMismatch(
                [String: Any].self, .init(codingPath: codingPath, debugDescription: "found \(node.kindName)"))
        }
        return KeyedDecodingContainer(ObjectContainer<Key>(fields: fields, decoder: self))
    }

    func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
        guard case .array(let elements) = node else {
            throw DecodingError.typeMismatch(
                [Any].self, .init(codingPath: codingPath, debugDescription: "found \(node.kindName)"))
        }
        return ArrayContainer(elements: elements, decoder: self)
    }

    func singleValueContainer() throws -> any SingleValueDecodingContainer { self }

    func decode<T: Decodable>(_ type: T.Type) throws -> T {
        // This decoder is the node's own: no need for another one.
        try session.decodeDirectly(T.self, from: node) ?? T(from: self)
    }

    func decodeNil() -> Bool {
        if case .null = node { return true }
        return false
    }

    func decode(_ type: Bool.Type) throws -> Bool { try session.bool(node) }
    func decode(_ type: String.Type) throws -> String { try session.string(node) }
    func decode(_ type: Double.Type) throws -> Double { try session.double(node) }
    func decode(_ type: Float.Type) throws -> Float { throw session.giveUp() }
    func decode(_ type: Int.Type) throws -> Int { try session.integer(node, as: Int.self) }
    func decode(_ type: Int8.Type) throws -> Int8 { try session.integer(node, as: Int8.self) }
    func decode(_ type: Int16.Type) throws -> Int16 { try session.integer(node, as: Int16.self) }
    func decode(_ type: Int32.Type) throws -> Int32 { try session.integer(node, as: Int32.self) }
    func decode(_ type: Int64.Type) throws -> Int64 { try session.integer(node, as: Int64.self) }
    func decode(_ type: UInt.Type) throws -> UInt { try session.integer(node, as: UInt.self) }
    func decode(_ type: UInt8.Type) throws -> UInt8 { try session.integer(node, as: UInt8.self) }
    func decode(_ type: UInt16.Type) throws -> UInt16 { try session.integer(node, as: UInt16.self) }
    func decode(_ type: UInt32.Type) throws -> UInt32 { try session.integer(node, as: UInt32.self) }
    func decode(_ type: UInt64.Type) throws -> UInt64 { try session.integer(node, as: UInt64.self) }
}

struct ObjectContainer<Key: CodingKey>: KeyedDecodingContainerProtocol {
    let fields: [(key: String, value: JSONNode)]
    let decoder: NodeDecoder
    private var session: DecodingSession { decoder.session }

    init(fields: [(key: String, value: JSONNode)], decoder: NodeDecoder) {
        self.fields = fields
        self.decoder = decoder
    }

    var codingPath: [any CodingKey] { decoder.codingPath }

    var allKeys: [Key] { fields.compactMap { Key(stringValue: $0.key) } }

    func contains(_ key: Key) -> Bool {
        let name = key.stringValue
        return fields.indices.contains { fields[$0].key == name }
    }

    private func node(_ key: Key) throws -> JSONNode {
        let name = key.stringValue
        for index in fields.indices where fields[index].key == name { return fields[index].value }
        throw DecodingError.keyNotFound(
            key, .init(codingPath: codingPath, debugDescription: "no value for key \(name)"))
    }

    func decodeNil(forKey key: Key) throws -> Bool {
        if case .null = try node(key) { return true }
        return false
    }

    func decode(_ type: Bool.Type, forKey key: Key) throws -> Bool { try session.bool(node(key)) }
    func decode(_ type: String.Type, forKey key: Key) throws -> String { try session.string(node(key)) }
    func decode(_ type: Double.Type, forKey key: Key) throws -> Double { try session.double(node(key)) }
    func decode(_ type: Float.Type, forKey key: Key) throws -> Float { throw session.giveUp() }
    func decode(_ type: Int.Type, forKey key: Key) throws -> Int { try session.integer(node(key), as: Int.self) }
    func decode(_ type: Int8.Type, forKey key: Key) throws -> Int8 { try session.integer(node(key), as: Int8.self) }
    func decode(_ type: Int16.Type, forKey key: Key) throws -> Int16 { try session.integer(node(key), as: Int16.self) }
    func decode(_ type: Int32.Type, forKey key: Key) throws -> Int32 { try session.integer(node(key), as: Int32.self) }
    func decode(_ type: Int64.Type, forKey key: Key) throws -> Int64 { try session.integer(node(key), as: Int64.self) }
    func decode(_ type: UInt.Type, forKey key: Key) throws -> UInt { try session.integer(node(key), as: UInt.self) }
    func decode(_ type: UInt8.Type, forKey key: Key) throws -> UInt8 { try session.integer(node(key), as: UInt8.self) }
    func decode(_ type: UInt16.Type, forKey key: Key) throws -> UInt16 {
        try session.integer(node(key), as: UInt16.self)
    }
    func decode(_ type: UInt32.Type, forKey key: Key) throws -> UInt32 {
        try session.integer(node(key), as: UInt32.self)
    }
    func decode(_ type: UInt64.Type, forKey key: Key) throws -> UInt64 {
        try session.integer(node(key), as: UInt64.self)
    }
    func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T {
        try session.decode(T.self, from: node(key), parent: decoder, key: key)
    }

    func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: Key) throws
        -> KeyedDecodingContainer<NestedKey>
    {
        try NodeDecoder(node: node(key), session: session, parent: decoder, key: key).container(keyedBy: type)
    }

    func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer {
        try NodeDecoder(node: node(key), session: session, parent: decoder, key: key).unkeyedContainer()
    }

    func superDecoder() throws -> any Decoder { throw session.giveUp() }
    func superDecoder(forKey key: Key) throws -> any Decoder { throw session.giveUp() }
}

struct ArrayContainer: UnkeyedDecodingContainer {
    let elements: [JSONNode]
    let decoder: NodeDecoder
    var currentIndex = 0
    private var session: DecodingSession { decoder.session }

    init(elements: [JSONNode], decoder: NodeDecoder) {
        self.elements = elements
        self.decoder = decoder
    }

    var codingPath: [any CodingKey] { decoder.codingPath }
    var count: Int? { elements.count }
    var isAtEnd: Bool { currentIndex >= elements.count }

    struct IndexKey: CodingKey {
        var intValue: Int?
        var stringValue: String { "Index \(intValue ?? 0)" }
        init(intValue: Int) { self.intValue = intValue }
        init?(stringValue: String) { nil }
    }

    /// The current element; the index moves on (``advance(_:)``) only once it was read.
    private func current() throws -> JSONNode {
        guard !isAtEnd else {
            throw DecodingError.valueNotFound(
                Any.self, .init(codingPath: codingPath, debugDescription: "unkeyed container is at end"))
        }
        return elements[currentIndex]
    }

    private mutating func advance<T>(_ value: T) -> T {
        currentIndex += 1
        return value
    }

    private var currentKey: IndexKey { IndexKey(intValue: currentIndex) }

    mutating func decodeNil() throws -> Bool {
        guard case .null = try current() else { return false }
        currentIndex += 1
        return true
    }

    mutating func decode(_ type: Bool.Type) throws -> Bool {
        let value = try session.bool(current())
        return advance(value)
    }
    mutating func decode(_ type: String.Type) throws -> String {
        let value = try session.string(current())
        return advance(value)
    }
    mutating func decode(_ type: Double.Type) throws -> Double {
        let value = try session.double(current())
        return advance(value)
    }
    mutating func decode(_ type: Float.Type) throws -> Float { throw session.giveUp() }
    mutating func decode(_ type: Int.Type) throws -> Int {
        let value = try session.integer(current(), as: Int.self)
        return advance(value)
    }
    mutating func decode(_ type: Int8.Type) throws -> Int8 {
        let value = try session.integer(current(), as: Int8.self)
        return advance(value)
    }
    mutating func decode(_ type: Int16.Type) throws -> Int16 {
        let value = try session.integer(current(), as: Int16.self)
        return advance(value)
    }
    mutating func decode(_ type: Int32.Type) throws -> Int32 {
        let value = try session.integer(current(), as: Int32.self)
        return advance(value)
    }
    mutating func decode(_ type: Int64.Type) throws -> Int64 {
        let value = try session.integer(current(), as: Int64.self)
        return advance(value)
    }
    mutating func decode(_ type: UInt.Type) throws -> UInt {
        let value = try session.integer(current(), as: UInt.self)
        return advance(value)
    }
    mutating func decode(_ type: UInt8.Type) throws -> UInt8 {
        let value = try session.integer(current(), as: UInt8.self)
        return advance(value)
    }
    mutating func decode(_ type: UInt16.Type) throws -> UInt16 {
        let value = try session.integer(current(), as: UInt16.self)
        return advance(value)
    }
    mutating func decode(_ type: UInt32.Type) throws -> UInt32 {
        let value = try session.integer(current(), as: UInt32.self)
        return advance(value)
    }
    mutating func decode(_ type: UInt64.Type) throws -> UInt64 {
        let value = try session.integer(current(), as: UInt64.self)
        return advance(value)
    }
    mutating func decode<T: Decodable>(_ type: T.Type) throws -> T {
        let value = try session.decode(T.self, from: current(), parent: decoder, key: currentKey)
        return advance(value)
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type) throws -> KeyedDecodingContainer<
        NestedKey
    > {
        let value = try NodeDecoder(node: current(), session: session, parent: decoder, key: currentKey).container(
            keyedBy: type)
        return advance(value)
    }

    mutating func nestedUnkeyedContainer() throws -> any UnkeyedDecodingContainer {
        let value = try NodeDecoder(node: current(), session: session, parent: decoder, key: currentKey)
            .unkeyedContainer()
        return advance(value)
    }

    mutating func superDecoder() throws -> any Decoder { throw session.giveUp() }
}
