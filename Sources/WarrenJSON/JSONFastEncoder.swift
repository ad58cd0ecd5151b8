import Foundation

/// Encodes `Encodable` values straight to JSON bytes, several times cheaper than Foundation's `JSONEncoder` for the
/// shapes messages usually have (objects of strings, integers, doubles, booleans, optionals, arrays, nested objects and
/// dates).
///
/// What it writes is what `JSONEncoder` (with `.iso8601` dates, the `JSONMessageCodec` setup) writes — the same
/// escapes (`\/` included), the same numbers (`1` for `1.0`, `1e+20`), the same dates — except for the order of an
/// object's keys: it keeps the order of encoding, where `JSONEncoder` follows its dictionary's. Whatever it is not
/// certain about makes it give up and ``encode(_:)`` return `nil`, so the caller asks `JSONEncoder`: `Data`, `URL`,
/// `Decimal`, non-finite numbers, `Int128`, dates before 1600 or after 9999 (and negative ones with a fraction),
/// `superEncoder()`, a key written twice, a container used again after a sibling was written, a value that encodes
/// nothing, reading `codingPath`, and any error thrown while encoding (so errors always come from `JSONEncoder`).
enum JSONFastEncoder {
    /// The JSON text of `value`, or `nil` when `JSONEncoder` has to do it.
    static func encode<T: Encodable>(_ value: T) -> [UInt8]? {
        let session = EncodingSession()
        session.encodeValue(value)
        return session.gaveUp ? nil : session.output
    }
}

/// The state of one encoding: the text so far and the containers still open, innermost last.
final class EncodingSession {
    struct Frame {
        let id: Int
        let isObject: Bool
        /// The slot whose value this container is (0 for a nested container).
        let owner: Int
        var count = 0
        /// Keys written so far (objects only), to give up on a key written twice: a list while there are few, then a
        /// set (a large dictionary would make the list quadratic).
        var keys: [String] = []
        var keySet: Set<String>?

        /// Records `key`; `false` when it was written already.
        mutating func insert(_ key: String) -> Bool {
            if keySet == nil {
                if keys.contains(key) { return false }
                keys.append(key)
                if keys.count > 16 { keySet = Set(keys) }
                return true
            }
            return keySet!.insert(key).inserted
        }
    }

    var output: [UInt8] = []
    var stack: [Frame] = []
    var gaveUp = false
    private var nextID = 1
    /// The slot (a value asked for but not yet written) whose encoder may still open a container or write a value.
    private var openSlot = 0

    init() {
        output.reserveCapacity(256)
    }

    func giveUp() { gaveUp = true }

    // MARK: Values

    /// Writes `value` where the output stands (after a key, a comma or at the start).
    func encodeValue<T: Encodable>(_ value: T) {
        guard !gaveUp else { return }
        if T.self == Date.self {
            writeDate(value as! Date)
            return
        }
        if T.self == Data.self || T.self == URL.self || T.self == Decimal.self {
            giveUp()  // JSONEncoder writes these in ways of its own
            return
        }
        let slot = newID()
        let depth = stack.count
        let outer = openSlot
        openSlot = slot
        do {
            try value.encode(to: ValueEncoder(session: self, slot: slot))
        } catch {
            giveUp()
        }
        if openSlot == slot { giveUp() }  // it wrote nothing; JSONEncoder writes {} or throws
        openSlot = outer
        closeFrames(downTo: depth)
    }

    /// Called by a value's encoder before it writes: only the slot's own encoder may, and only once.
    func claim(_ slot: Int) -> Bool {
        guard !gaveUp, openSlot == slot else {
            giveUp()
            return false
        }
        openSlot = 0
        return true
    }

    func writeNull() { append("null") }

    func writeBool(_ value: Bool) { append(value ? "true" : "false") }

    func writeInteger<I: FixedWidthInteger>(_ value: I) {
        if I.bitWidth > 64 {
            giveUp()  // Int128, UInt128: JSONEncoder's own business
            return
        }
        var magnitude = UInt64(truncatingIfNeeded: value.magnitude)
        if value < 0 { output.append(UInt8(ascii: "-")) }
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)  // 24 bytes, enough for 20 digits
        withUnsafeMutableBytes(of: &digits) { buffer in
            var position = buffer.count
            repeat {
                position -= 1
                buffer[position] = UInt8(ascii: "0") + UInt8(magnitude % 10)
                magnitude /= 10
            } while magnitude > 0
            output.append(contentsOf: buffer[position...])
        }
    }

    func writeFloatingPoint<F: BinaryFloatingPoint & LosslessStringConvertible>(_ value: F) {
        guard value.isFinite else {
            giveUp()  // JSONEncoder throws (no non-conforming float strategy)
            return
        }
        var text = value.description
        if text.hasSuffix(".0") { text.removeLast(2) }
        append(text)
    }

    func writeString(_ value: String) {
        var value = value
        value.withUTF8 { utf8 in
            output.append(UInt8(ascii: "\""))
            var runStart = 0
            for index in utf8.indices {
                let byte = utf8[index]
                guard
                    byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") || byte == UInt8(ascii: "/")
                else { continue }
                output.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[runStart..<index]))
                runStart = index + 1
                output.append(UInt8(ascii: "\\"))
                switch byte {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): output.append(byte)
                case 0x08: output.append(UInt8(ascii: "b"))
                case 0x0C: output.append(UInt8(ascii: "f"))
                case 0x0A: output.append(UInt8(ascii: "n"))
                case 0x0D: output.append(UInt8(ascii: "r"))
                case 0x09: output.append(UInt8(ascii: "t"))
                default:
                    let hex: StaticString = "0123456789abcdef"
                    append("u00")
                    output.append(hex.utf8Start[Int(byte >> 4)])
                    output.append(hex.utf8Start[Int(byte & 0xF)])
                }
            }
            output.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[runStart...]))
            output.append(UInt8(ascii: "\""))
        }
    }

    /// `JSONEncoder`'s `.iso8601`: `yyyy-MM-ddTHH:mm:ssZ` in UTC, the fraction of a second dropped.
    func writeDate(_ date: Date) {
        let interval = date.timeIntervalSince1970
        // 1600-01-01 to 9999-12-31: the Gregorian calendar throughout, four-digit years.
        guard interval >= -11_676_096_000, interval < 253_402_300_800,
            interval >= 0 || interval == interval.rounded(.down)
        else {
            giveUp()
            return
        }
        let seconds = Int64(interval.rounded(.down))
        let days = seconds >= 0 ? seconds / 86_400 : (seconds - 86_399) / 86_400
        let secondOfDay = seconds - days * 86_400
        // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
        let shifted = days + 719_468
        let era = (shifted >= 0 ? shifted : shifted - 146_096) / 146_097
        let dayOfEra = shifted - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1_460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let monthIndex = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * monthIndex + 2) / 5 + 1
        let month = monthIndex < 10 ? monthIndex + 3 : monthIndex - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
        output.append(UInt8(ascii: "\""))
        appendDigits(year, width: 4)
        output.append(UInt8(ascii: "-"))
        appendDigits(month, width: 2)
        output.append(UInt8(ascii: "-"))
        appendDigits(day, width: 2)
        output.append(UInt8(ascii: "T"))
        appendDigits(secondOfDay / 3_600, width: 2)
        output.append(UInt8(ascii: ":"))
        appendDigits(secondOfDay / 60 % 60, width: 2)
        output.append(UInt8(ascii: ":"))
        appendDigits(secondOfDay % 60, width: 2)
        output.append(contentsOf: [UInt8(ascii: "Z"), UInt8(ascii: "\"")])
    }

    private func appendDigits(_ value: Int64, width: Int) {
        var divisor: Int64 = 1
        for _ in 1..<width { divisor *= 10 }
        while divisor > 0 {
            output.append(UInt8(ascii: "0") + UInt8(value / divisor % 10))
            divisor /= 10
        }
    }

    private func append(_ text: StaticString) {
        output.append(contentsOf: UnsafeBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
    }

    private func append(_ text: String) {
        var text = text
        text.withUTF8 { output.append(contentsOf: $0) }
    }

    // MARK: Containers

    private func newID() -> Int {
        defer { nextID += 1 }
        return nextID
    }

    /// Opens an object or array: the value of `owner` (a slot), or 0 for a nested container.
    func open(isObject: Bool, owner: Int = 0) -> Int {
        let id = newID()
        output.append(isObject ? UInt8(ascii: "{") : UInt8(ascii: "["))
        stack.append(Frame(id: id, isObject: isObject, owner: owner))
        return id
    }

    /// Makes `frame` the innermost open container, closing those opened inside it (they are done: their parent writes
    /// again). `false`, and giving up, when `frame` was closed already.
    func resume(_ frame: Int) -> Bool {
        guard !gaveUp else { return false }
        if stack.last?.id == frame { return true }
        guard let index = stack.lastIndex(where: { $0.id == frame }) else {
            giveUp()
            return false
        }
        closeFrames(downTo: index + 1)
        return true
    }

    /// Closes the open containers above the first `depth`.
    func closeFrames(downTo depth: Int) {
        while stack.count > depth {
            let frame = stack.removeLast()
            output.append(frame.isObject ? UInt8(ascii: "}") : UInt8(ascii: "]"))
        }
    }

    /// Writes the separator and `key` of the next member of `frame` (the innermost open container).
    func beginMember(_ key: String) -> Bool {
        let top = stack.count - 1
        guard stack[top].insert(key) else {
            giveUp()  // JSONEncoder keeps the last value of a key written twice
            return false
        }
        if stack[top].count > 0 { output.append(UInt8(ascii: ",")) }
        stack[top].count += 1
        writeString(key)
        output.append(UInt8(ascii: ":"))
        return true
    }

    /// Writes the separator of the next element of the innermost open container (an array).
    func beginElement() {
        let top = stack.count - 1
        if stack[top].count > 0 { output.append(UInt8(ascii: ",")) }
        stack[top].count += 1
    }

    func count(of frame: Int) -> Int { stack.last { $0.id == frame }?.count ?? 0 }
}

// MARK: - The Encoder

/// The encoder handed to one value's `encode(to:)`: it may open one container, or write one single value.
struct ValueEncoder: Encoder {
    let session: EncodingSession
    let slot: Int

    var codingPath: [any CodingKey] {
        session.giveUp()  // not tracked: a type that looks at it is left to JSONEncoder
        return []
    }

    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        KeyedEncodingContainer(ObjectWriter<Key>(session: session, frame: frame(isObject: true)))
    }

    func unkeyedContainer() -> any UnkeyedEncodingContainer {
        ArrayWriter(session: session, frame: frame(isObject: false))
    }

    func singleValueContainer() -> any SingleValueEncodingContainer {
        ValueWriter(session: session, slot: slot)
    }

    /// The slot's container: opened now, or the one it opened already (asking twice is allowed).
    private func frame(isObject: Bool) -> Int {
        if let top = session.stack.last, top.owner == slot, top.isObject == isObject { return top.id }
        guard session.claim(slot) else { return -1 }
        return session.open(isObject: isObject, owner: slot)
    }
}

struct ValueWriter: SingleValueEncodingContainer {
    let session: EncodingSession
    let slot: Int

    var codingPath: [any CodingKey] {
        session.giveUp()
        return []
    }

    mutating func encodeNil() throws { if session.claim(slot) { session.writeNull() } }
    mutating func encode(_ value: Bool) throws { if session.claim(slot) { session.writeBool(value) } }
    mutating func encode(_ value: String) throws { if session.claim(slot) { session.writeString(value) } }
    mutating func encode(_ value: Double) throws { if session.claim(slot) { session.writeFloatingPoint(value) } }
    mutating func encode(_ value: Float) throws { if session.claim(slot) { session.writeFloatingPoint(value) } }
    mutating func encode(_ value: Int) throws { if session.claim(slot) { session.writeInteger(value) } }
    mutating func encode(_ value: Int8) throws { if session.claim(slot) { session.writeInteger(value) } }
    mutating func encode(_ value: Int16) throws { if session.claim(slot) { session.writeInteger(value) } }
    mutating func encode(_ value: Int32) throws { if session.claim(slot) { session.writeInteger(value) } }
    mutating func encode(_ value: Int64) throws { if session.claim(slot) { session.writeInteger(value) } }
    mutating func encode(_ value: UInt) throws { if session.claim(slot) { session.writeInteger(value) } }
    mutating func encode(_ value: UInt8) throws { if session.claim(slot) { session.writeInteger(value) } }
    mutating func encode(_ value: UInt16) throws { if session.claim(slot) { session.writeInteger(value) } }
    mutating func encode(_ value: UInt32) throws { if session.claim(slot) { session.writeInteger(value) } }
    mutating func encode(_ value: UInt64) throws { if session.claim(slot) { session.writeInteger(value) } }

    mutating func encode<T: Encodable>(_ value: T) throws {
        // The slot passes to the value: its own encode(to:) writes it (a Date, Data… is recognised there).
        guard session.claim(slot) else { return }
        session.encodeValue(value)
    }
}

struct ObjectWriter<Key: CodingKey>: KeyedEncodingContainerProtocol {
    let session: EncodingSession
    let frame: Int

    var codingPath: [any CodingKey] {
        session.giveUp()
        return []
    }

    private func member(_ key: Key) -> Bool {
        session.resume(frame) && session.beginMember(key.stringValue)
    }

    mutating func encodeNil(forKey key: Key) throws { if member(key) { session.writeNull() } }
    mutating func encode(_ value: Bool, forKey key: Key) throws { if member(key) { session.writeBool(value) } }
    mutating func encode(_ value: String, forKey key: Key) throws { if member(key) { session.writeString(value) } }
    mutating func encode(_ value: Double, forKey key: Key) throws {
        if member(key) { session.writeFloatingPoint(value) }
    }
    mutating func encode(_ value: Float, forKey key: Key) throws {
        if member(key) { session.writeFloatingPoint(value) }
    }
    mutating func encode(_ value: Int, forKey key: Key) throws { if member(key) { session.writeInteger(value) } }
    mutating func encode(_ value: Int8, forKey key: Key) throws { if member(key) { session.writeInteger(value) } }
    mutating func encode(_ value: Int16, forKey key: Key) throws { if member(key) { session.writeInteger(value) } }
    mutating func encode(_ value: Int32, forKey key: Key) throws { if member(key) { session.writeInteger(value) } }
    mutating func encode(_ value: Int64, forKey key: Key) throws { if member(key) { session.writeInteger(value) } }
    mutating func encode(_ value: UInt, forKey key: Key) throws { if member(key) { session.writeInteger(value) } }
    mutating func encode(_ value: UInt8, forKey key: Key) throws { if member(key) { session.writeInteger(value) } }
    mutating func encode(_ value: UInt16, forKey key: Key) throws { if member(key) { session.writeInteger(value) } }
    mutating func encode(_ value: UInt32, forKey key: Key) throws { if member(key) { session.writeInteger(value) } }
    mutating func encode(_ value: UInt64, forKey key: Key) throws { if member(key) { session.writeInteger(value) } }

    mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws {
        if member(key) { session.encodeValue(value) }
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type, forKey key: Key)
        -> KeyedEncodingContainer<NestedKey>
    {
        let nested = member(key) ? session.open(isObject: true) : -1
        return KeyedEncodingContainer(ObjectWriter<NestedKey>(session: session, frame: nested))
    }

    mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
        ArrayWriter(session: session, frame: member(key) ? session.open(isObject: false) : -1)
    }

    mutating func superEncoder() -> any Encoder {
        session.giveUp()
        return ValueEncoder(session: session, slot: -1)
    }

    mutating func superEncoder(forKey key: Key) -> any Encoder {
        session.giveUp()
        return ValueEncoder(session: session, slot: -1)
    }
}

struct ArrayWriter: UnkeyedEncodingContainer {
    let session: EncodingSession
    let frame: Int

    var codingPath: [any CodingKey] {
        session.giveUp()
        return []
    }

    var count: Int { session.count(of: frame) }

    private func element() -> Bool {
        guard session.resume(frame) else { return false }
        session.beginElement()
        return true
    }

    mutating func encodeNil() throws { if element() { session.writeNull() } }
    mutating func encode(_ value: Bool) throws { if element() { session.writeBool(value) } }
    mutating func encode(_ value: String) throws { if element() { session.writeString(value) } }
    mutating func encode(_ value: Double) throws { if element() { session.writeFloatingPoint(value) } }
    mutating func encode(_ value: Float) throws { if element() { session.writeFloatingPoint(value) } }
    mutating func encode(_ value: Int) throws { if element() { session.writeInteger(value) } }
    mutating func encode(_ value: Int8) throws { if element() { session.writeInteger(value) } }
    mutating func encode(_ value: Int16) throws { if element() { session.writeInteger(value) } }
    mutating func encode(_ value: Int32) throws { if element() { session.writeInteger(value) } }
    mutating func encode(_ value: Int64) throws { if element() { session.writeInteger(value) } }
    mutating func encode(_ value: UInt) throws { if element() { session.writeInteger(value) } }
    mutating func encode(_ value: UInt8) throws { if element() { session.writeInteger(value) } }
    mutating func encode(_ value: UInt16) throws { if element() { session.writeInteger(value) } }
    mutating func encode(_ value: UInt32) throws { if element() { session.writeInteger(value) } }
    mutating func encode(_ value: UInt64) throws { if element() { session.writeInteger(value) } }

    mutating func encode<T: Encodable>(_ value: T) throws {
        if element() { session.encodeValue(value) }
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type) -> KeyedEncodingContainer<
        NestedKey
    > {
        KeyedEncodingContainer(
            ObjectWriter<NestedKey>(session: session, frame: element() ? session.open(isObject: true) : -1))
    }

    mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer {
        ArrayWriter(session: session, frame: element() ? session.open(isObject: false) : -1)
    }

    mutating func superEncoder() -> any Encoder {
        session.giveUp()
        return ValueEncoder(session: session, slot: -1)
    }
}
