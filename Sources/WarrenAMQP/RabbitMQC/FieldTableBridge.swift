import CRabbitMQ
import Foundation

/// How deep nested tables and arrays are read from the wire. Anything deeper is replaced by `.void`, so a hostile
/// header cannot exhaust the I/O thread's stack.
let maximumFieldNestingDepth = 64

extension CArena {
    func table(_ table: AMQPTable) -> amqp_table_t {
        guard !table.isEmpty else { return amqp_table_t(num_entries: 0, entries: nil) }
        let entries = allocate(amqp_table_entry_t.self, count: table.count)
        for (index, entry) in table.enumerated() {
            entries[index] = amqp_table_entry_t(key: bytes(entry.key), value: fieldValue(entry.value))
        }
        // Sorted by the keys' bytes, in place: a deterministic wire order makes encodings comparable.
        var sorted = UnsafeMutableBufferPointer(start: entries, count: table.count)
        sorted.sort { Self.precedes($0.key, $1.key) }
        return amqp_table_t(num_entries: Int32(table.count), entries: entries)
    }

    private static func precedes(_ a: amqp_bytes_t, _ b: amqp_bytes_t) -> Bool {
        let order = memcmp(a.bytes, b.bytes, min(a.len, b.len))
        return order != 0 ? order < 0 : a.len < b.len
    }

    func fieldValue(_ value: AMQPFieldValue) -> amqp_field_value_t {
        var field = amqp_field_value_t()
        func kind(_ character: Character) { field.kind = character.asciiValue! }
        switch value {
        case .bool(let v):
            kind("t")
            field.value.boolean = v ? 1 : 0
        case .int8(let v):
            kind("b")
            field.value.i8 = v
        case .uint8(let v):
            kind("B")
            field.value.u8 = v
        case .int16(let v):
            kind("s")
            field.value.i16 = v
        case .uint16(let v):
            kind("u")
            field.value.u16 = v
        case .int32(let v):
            kind("I")
            field.value.i32 = v
        case .uint32(let v):
            kind("i")
            field.value.u32 = v
        case .int64(let v):
            kind("l")
            field.value.i64 = v
        case .uint64(let v):
            kind("L")
            field.value.u64 = v
        case .float(let v):
            kind("f")
            field.value.f32 = v
        case .double(let v):
            kind("d")
            field.value.f64 = v
        case .decimal(let scale, let v):
            kind("D")
            field.value.decimal = amqp_decimal_t(decimals: scale, value: v)
        case .string(let v):
            kind("S")
            field.value.bytes = bytes(v)
        case .bytes(let v):
            kind("x")
            field.value.bytes = bytes(v)
        case .timestamp(let v):
            kind("T")
            field.value.u64 = v
        case .void: kind("V")
        case .table(let v):
            kind("F")
            field.value.table = table(v)
        case .array(let values):
            kind("A")
            let entries = allocate(amqp_field_value_t.self, count: values.count)
            for (index, element) in values.enumerated() { entries[index] = fieldValue(element) }
            field.value.array = amqp_array_t(num_entries: Int32(values.count), entries: values.isEmpty ? nil : entries)
        }
        return field
    }

    package func properties(_ properties: AMQPProperties) -> amqp_basic_properties_t {
        var c = amqp_basic_properties_t()
        var flags: UInt32 = 0
        func set(_ value: String?, _ flag: Int32, _ assign: (amqp_bytes_t) -> Void) {
            guard let value else { return }
            flags |= UInt32(flag)
            assign(bytes(value))
        }
        set(properties.contentType, AMQP_BASIC_CONTENT_TYPE_FLAG) { c.content_type = $0 }
        set(properties.contentEncoding, AMQP_BASIC_CONTENT_ENCODING_FLAG) { c.content_encoding = $0 }
        if let headers = properties.headers {
            flags |= UInt32(AMQP_BASIC_HEADERS_FLAG)
            c.headers = table(headers)
        }
        if let mode = properties.deliveryMode {
            flags |= UInt32(AMQP_BASIC_DELIVERY_MODE_FLAG)
            c.delivery_mode = mode.rawValue
        }
        if let priority = properties.priority {
            flags |= UInt32(AMQP_BASIC_PRIORITY_FLAG)
            c.priority = priority
        }
        set(properties.correlationID, AMQP_BASIC_CORRELATION_ID_FLAG) { c.correlation_id = $0 }
        set(properties.replyTo, AMQP_BASIC_REPLY_TO_FLAG) { c.reply_to = $0 }
        set(properties.expiration, AMQP_BASIC_EXPIRATION_FLAG) { c.expiration = $0 }
        set(properties.messageID, AMQP_BASIC_MESSAGE_ID_FLAG) { c.message_id = $0 }
        if let timestamp = properties.timestamp {
            flags |= UInt32(AMQP_BASIC_TIMESTAMP_FLAG)
            // Clamped: a timestamp read from a message (2^64 - 1 seconds, say) does not survive the trip through Double.
            let seconds = timestamp.timeIntervalSince1970.rounded(.down)
            c.timestamp = seconds.isNaN || seconds <= 0 ? 0 : seconds >= 0x1p64 ? UInt64.max : UInt64(seconds)
        }
        set(properties.type, AMQP_BASIC_TYPE_FLAG) { c.type = $0 }
        set(properties.userID, AMQP_BASIC_USER_ID_FLAG) { c.user_id = $0 }
        set(properties.appID, AMQP_BASIC_APP_ID_FLAG) { c.app_id = $0 }
        set(properties.clusterID, AMQP_BASIC_CLUSTER_ID_FLAG) { c.cluster_id = $0 }
        c._flags = flags
        return c
    }
}

extension AMQPFieldValue {
    /// Reads a field value decoded by librabbitmq. Long strings that are not valid UTF-8 become `.bytes`.
    init(_ field: amqp_field_value_t, depth: Int = 0) {
        switch field.kind {
        case UInt8(ascii: "t"): self = .bool(field.value.boolean != 0)
        case UInt8(ascii: "b"): self = .int8(field.value.i8)
        case UInt8(ascii: "B"): self = .uint8(field.value.u8)
        case UInt8(ascii: "s"): self = .int16(field.value.i16)
        case UInt8(ascii: "u"): self = .uint16(field.value.u16)
        case UInt8(ascii: "I"): self = .int32(field.value.i32)
        case UInt8(ascii: "i"): self = .uint32(field.value.u32)
        case UInt8(ascii: "l"): self = .int64(field.value.i64)
        case UInt8(ascii: "L"): self = .uint64(field.value.u64)
        case UInt8(ascii: "f"): self = .float(field.value.f32)
        case UInt8(ascii: "d"): self = .double(field.value.f64)
        case UInt8(ascii: "D"): self = .decimal(scale: field.value.decimal.decimals, value: field.value.decimal.value)
        case UInt8(ascii: "S"):
            if let string = field.value.bytes.validatedString {
                self = .string(string)
            } else {
                self = .bytes(field.value.bytes.array)
            }
        case UInt8(ascii: "x"): self = .bytes(field.value.bytes.array)
        case UInt8(ascii: "T"): self = .timestamp(field.value.u64)
        case UInt8(ascii: "F"):
            self = depth < maximumFieldNestingDepth ? .table(AMQPTable(field.value.table, depth: depth + 1)) : .void
        case UInt8(ascii: "A"):
            guard depth < maximumFieldNestingDepth else {
                self = .void
                return
            }
            let array = field.value.array
            var values: [AMQPFieldValue] = []
            values.reserveCapacity(Int(array.num_entries))
            for index in 0..<Int(max(0, array.num_entries)) {
                values.append(AMQPFieldValue(array.entries[index], depth: depth + 1))
            }
            self = .array(values)
        default: self = .void
        }
    }
}

extension AMQPTable {
    /// - Parameter names: where the I/O thread keeps the keys it has seen (nested tables decode their keys without).
    init(_ table: amqp_table_t, depth: Int = 0, names: NameCache? = nil) {
        self.init(minimumCapacity: Int(Swift.max(0, table.num_entries)))
        for index in 0..<Int(Swift.max(0, table.num_entries)) {
            let entry = table.entries[index]
            let key = names?.string(entry.key) ?? entry.key.string
            if self[key] == nil { self[key] = AMQPFieldValue(entry.value, depth: depth) }
        }
    }
}

extension AMQPProperties {
    /// - Parameter names: where the I/O thread keeps the names it has seen (content type and encoding, type, app and
    ///   user id, header keys); the values that differ per message are decoded afresh.
    init(_ c: amqp_basic_properties_t, names: NameCache? = nil) {
        self.init()
        let flags = c._flags
        func has(_ flag: Int32) -> Bool { flags & UInt32(flag) != 0 }
        func name(_ bytes: amqp_bytes_t) -> String { names?.string(bytes) ?? bytes.string }
        if has(AMQP_BASIC_CONTENT_TYPE_FLAG) { contentType = name(c.content_type) }
        if has(AMQP_BASIC_CONTENT_ENCODING_FLAG) { contentEncoding = name(c.content_encoding) }
        if has(AMQP_BASIC_HEADERS_FLAG) { headers = AMQPTable(c.headers, names: names) }
        if has(AMQP_BASIC_DELIVERY_MODE_FLAG) { deliveryMode = DeliveryMode(rawValue: c.delivery_mode) }
        if has(AMQP_BASIC_PRIORITY_FLAG) { priority = c.priority }
        if has(AMQP_BASIC_CORRELATION_ID_FLAG) { correlationID = c.correlation_id.string }
        if has(AMQP_BASIC_REPLY_TO_FLAG) { replyTo = c.reply_to.string }
        if has(AMQP_BASIC_EXPIRATION_FLAG) { expiration = c.expiration.string }
        if has(AMQP_BASIC_MESSAGE_ID_FLAG) { messageID = c.message_id.string }
        if has(AMQP_BASIC_TIMESTAMP_FLAG) { timestamp = Date(timeIntervalSince1970: TimeInterval(c.timestamp)) }
        if has(AMQP_BASIC_TYPE_FLAG) { type = name(c.type) }
        if has(AMQP_BASIC_USER_ID_FLAG) { userID = name(c.user_id) }
        if has(AMQP_BASIC_APP_ID_FLAG) { appID = name(c.app_id) }
        if has(AMQP_BASIC_CLUSTER_ID_FLAG) { clusterID = c.cluster_id.string }
    }
}
