import Testing
import WarrenTestSupport

@testable import WarrenAMQP

@Suite("Field tables through librabbitmq's wire codec")
struct FieldTableTests {
    static let everyType: AMQPTable = [
        "bool": .bool(true),
        "false": .bool(false),
        "i8": .int8(-8),
        "u8": .uint8(200),
        "i16": .int16(-16000),
        "u16": .uint16(65000),
        "i32": .int32(-2_000_000_000),
        "u32": .uint32(4_000_000_000),
        "i64": .int64(Int64.min),
        "u64": .uint64(UInt64.max),
        "f32": .float(1.5),
        "f64": .double(-2.25e100),
        "decimal": .decimal(scale: 2, value: 12345),
        "string": .string("héllo wörld ✓"),
        "empty": .string(""),
        "bytes": .bytes([0, 1, 2, 255]),
        "timestamp": .timestamp(1_700_000_000),
        "void": .void,
        "array": .array([.int32(1), .string("two"), .array([.bool(false)]), .table(["k": .int64(3)])]),
        "emptyArray": .array([]),
        "table": .table(["nested": .table(["deeper": .string("yes"), "n": .int16(7)]), "x": .void]),
        "emptyTable": .table([:]),
    ]

    @Test func everyTypeSurvivesARoundTrip() throws {
        let bytes = try #require(FieldTableWireCodec.encode(Self.everyType))
        let decoded = try #require(FieldTableWireCodec.decode(bytes))
        #expect(decoded == Self.everyType)
    }

    @Test func oneArenaServesCallAfterCallThroughGrowthAndReset() throws {
        // What the I/O thread does: one arena for every publish, reset after each. A table far larger than the arena's
        // block makes it grow in the middle of a table (entries written before the growth must stay valid) and shrink
        // back at the reset; the tables after it must encode exactly as with a fresh arena.
        let huge = AMQPTable(
            uniqueKeysWithValues: (0..<5_000).map {
                (
                    "key-\($0)-" + String(repeating: "k", count: $0 % 40),
                    .string(String(repeating: "v", count: $0 % 300))
                )
            })
        let arena = CArena()
        for table in [
            Self.everyType, ["one": .int64(1)], huge, Self.everyType,
            ["x-warren-published-at": .int64(1_700_000_000_000)], huge, [:],
        ] {
            let bytes = try #require(FieldTableWireCodec.encode(table, in: arena))
            #expect(bytes == FieldTableWireCodec.encode(table))
            #expect(FieldTableWireCodec.decode(bytes) == table)
        }
    }

    @Test func eachTypeAloneSurvivesARoundTrip() throws {
        for (key, value) in Self.everyType {
            let table: AMQPTable = [key: value]
            let bytes = try #require(FieldTableWireCodec.encode(table))
            let decoded = try #require(FieldTableWireCodec.decode(bytes))
            #expect(decoded == table, "type \(key)")
        }
    }

    @Test func emptyTableEncodesToAZeroLength() throws {
        #expect(FieldTableWireCodec.encode([:]) == [0, 0, 0, 0])
        #expect(FieldTableWireCodec.decode([0, 0, 0, 0]) == [:])
    }

    @Test func wireFormatOfAStringEntry() throws {
        // 4-byte table length, 1-byte key length, key, kind 'S', 4-byte string length, string.
        let bytes = try #require(FieldTableWireCodec.encode(["a": .string("bc")]))
        #expect(
            bytes == [
                0, 0, 0, 9, 1, UInt8(ascii: "a"), UInt8(ascii: "S"), 0, 0, 0, 2, UInt8(ascii: "b"), UInt8(ascii: "c"),
            ])
    }

    @Test func invalidUTF8LongStringIsReadAsBytes() throws {
        // A table with key "k" holding kind 'S' with the bytes FF FE (not UTF-8), as a foreign publisher might send.
        let wire: [UInt8] = [0, 0, 0, 9, 1, UInt8(ascii: "k"), UInt8(ascii: "S"), 0, 0, 0, 2, 0xFF, 0xFE]
        let decoded = try #require(FieldTableWireCodec.decode(wire))
        #expect(decoded["k"] == .bytes([0xFF, 0xFE]))
    }

    @Test func truncatedWireDataIsRejectedNotCrashed() {
        let wire: [UInt8] = [0, 0, 0, 50, 1, UInt8(ascii: "k"), UInt8(ascii: "S"), 0, 0]
        #expect(FieldTableWireCodec.decode(wire) == nil)
    }

    @Test func deepNestingIsCutOffInsteadOfExhaustingTheStack() throws {
        var value: AMQPFieldValue = .string("bottom")
        for _ in 0..<200 { value = .table(["n": value]) }
        let bytes = try #require(FieldTableWireCodec.encode(["root": value]))
        let decoded = try #require(FieldTableWireCodec.decode(bytes))
        var depth = 0
        var current = decoded["root"]
        while case .table(let inner)? = current {
            depth += 1
            current = inner["n"]
        }
        #expect(depth == maximumFieldNestingDepth)
        #expect(current == .void)
    }

    @Test func literalsAndAccessors() {
        let table: AMQPFieldValue = ["a": 1, "b": "x", "c": true, "d": 1.5, "e": [1, 2]]
        #expect(table.tableValue?["a"] == .int64(1))
        #expect(table.tableValue?["a"]?.int64Value == 1)
        #expect(table.tableValue?["b"]?.stringValue == "x")
        #expect(table.tableValue?["e"]?.arrayValue?.count == 2)
        #expect(AMQPFieldValue.bytes(Array("ok".utf8)).stringValue == "ok")
        #expect(AMQPFieldValue.uint64(.max).int64Value == nil)
    }
}
