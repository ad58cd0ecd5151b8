import Foundation
import PropertyBased
import Testing

@testable import Warren
@testable import WarrenJSON

/// The fast JSON writer must write what Foundation's `JSONEncoder` (set up as `JSONMessageCodec` sets it up) writes —
/// byte for byte where `JSONEncoder`'s order is defined (arrays, single values), the same object otherwise — and hand
/// everything else over.
@Suite("JSON fast writer agrees with JSONEncoder")
struct JSONFastEncoderTests {
    typealias Generated = JSONFastDecoderTests

    static func foundation<T: Encodable>(_ value: T) throws -> [UInt8] {
        try JSONFastDecoderTests.encode(value)
    }

    static func expectSameBytes<T: Encodable>(_ value: T, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let reference = try foundation(value)
        #expect(JSONFastEncoder.encode(value) == reference, sourceLocation: sourceLocation)
    }

    /// The same JSON value, whatever the order of each object's keys (numbers compared as written).
    static func sameJSON(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard let first = canonical(a), let second = canonical(b) else { return false }
        return first == second
    }

    static func canonical(_ bytes: [UInt8]) -> String? {
        bytes.withUnsafeBufferPointer { buffer in
            var parser = JSONParser(bytes: buffer)
            return parser.parseDocument().map(render)
        }
    }

    static func render(_ node: JSONNode) -> String {
        switch node {
        case .null: "null"
        case .bool(let value): "\(value)"
        case .number(let text): text
        case .string(let text): "\"" + text.debugDescription + "\""
        case .array(let elements): "[" + elements.map(render).joined(separator: ",") + "]"
        case .object(let members):
            "{"
                + members.sorted { $0.key < $1.key }.map { $0.key.debugDescription + ":" + render($0.value) }.joined(
                    separator: ",") + "}"
        }
    }

    @Test func generatedMessagesAreWrittenAsJSONEncoderWritesThem() async {
        await propertyCheck(count: 400, input: Generated.sample) { sample in
            let fast = try #require(JSONFastEncoder.encode(sample), "gave up on \(sample)")
            let reference = try Self.foundation(sample)
            #expect(Self.sameJSON(fast, reference))
            let decoded = try Generated.foundation.decode(Generated.Sample.self, from: Data(fast))
            #expect(decoded == sample)
        }
    }

    @Test func scalarsAreByteForByteJSONEncoders() async throws {
        // Every ASCII character (controls, quotes, slash, backslash) and multi-byte ones, alone and in runs.
        let everyASCII = (0..<128).map { String(Character(Unicode.Scalar(UInt8($0)))) }
        let strings = everyASCII + [everyASCII.joined(), "é漢😀\u{2028}\u{FEFF}", "a/b\\c\"d", ""]
        try Self.expectSameBytes(strings)
        await propertyCheck(count: 200, input: Generated.text.array(of: 0...8)) { texts in
            try Self.expectSameBytes(texts)
        }

        let doubles: [Double] = [
            0, -0.0, 1, -1, 0.1, 1e15, 1e16, 1e20, 1e21, 1e-7, 123456789.123, .leastNonzeroMagnitude,
            .greatestFiniteMagnitude, -.leastNormalMagnitude, 100, 2.5e-5,
        ]
        try Self.expectSameBytes(doubles)
        await propertyCheck(count: 300, input: Generated.double.array(of: 1...8)) { values in
            try Self.expectSameBytes(values)
        }
        await propertyCheck(count: 200, input: Gen.int().array(of: 1...8)) { seeds in
            let floats = seeds.map { Float(bitPattern: UInt32(truncatingIfNeeded: $0)) }.filter(\.isFinite)
            try Self.expectSameBytes(floats)
        }

        struct Integers: Codable {
            var i8: [Int8]
            var u8: [UInt8]
            var i16: [Int16]
            var u16: [UInt16]
            var i32: [Int32]
            var u32: [UInt32]
            var i64: [Int64]
            var u64: [UInt64]
            var i: [Int]
            var u: [UInt]
        }
        let extremes = Integers(
            i8: [.min, -1, 0, .max], u8: [0, .max], i16: [.min, .max], u16: [.max], i32: [.min, .max], u32: [.max],
            i64: [.min, -10, 9, .max], u64: [0, 10, .max], i: [.min, .max], u: [.max])
        let extremesReference = try Self.foundation(extremes)
        #expect(Self.sameJSON(try #require(JSONFastEncoder.encode(extremes)), extremesReference))
        try Self.expectSameBytes(extremes.i64)
        try Self.expectSameBytes(extremes.u64)

        let optionals: [[Int?]] = [[1, nil, 3], [], [nil]]
        try Self.expectSameBytes(optionals)
        try Self.expectSameBytes(true)
        #expect(JSONFastEncoder.encode("top level") == (try Self.foundation("top level")))
    }

    @Test func datesAreByteForByteJSONEncoders() async throws {
        // 1600-01-01 to 9999-12-31, with fractions after 1970 (JSONEncoder drops them) and whole seconds before.
        let edges: [Double] = [
            0, 0.999, -1, -86_400, -11_676_096_000, 253_402_300_799.5, 951_782_400, 951_868_799, 1_700_000_000.123,
        ]
        let dates = edges.map { Date(timeIntervalSince1970: $0) }
        try Self.expectSameBytes(dates)
        await propertyCheck(count: 300, input: Gen.int(in: -11_676_096_000...253_402_300_799).array(of: 1...6)) {
            seconds in
            let dates = seconds.enumerated().map { index, second in
                Date(timeIntervalSince1970: Double(second) + (second >= 0 && index % 2 == 1 ? 0.75 : 0))
            }
            try Self.expectSameBytes(dates)
        }
    }

    struct Nested: Encodable {
        func encode(to encoder: any Encoder) throws {
            var object = encoder.container(keyedBy: AnyKey.self)
            var inner = object.nestedContainer(keyedBy: AnyKey.self, forKey: "inner")
            try inner.encode(1, forKey: "x")
            var list = inner.nestedUnkeyedContainer(forKey: "list")
            try list.encode("a")
            var deeper = list.nestedContainer(keyedBy: AnyKey.self)
            try deeper.encode(true, forKey: "y")
            try object.encode("after", forKey: "z")
            var again = encoder.container(keyedBy: AnyKey.self)  // asking twice gives the same object
            try again.encodeNil(forKey: "n")
        }
    }

    @Test func largeDictionariesAreWritten() throws {
        let large = Dictionary(uniqueKeysWithValues: (0..<5_000).map { ("key \($0)", $0) })
        let fast = try #require(JSONFastEncoder.encode(large))
        let reference = try Self.foundation(large)
        #expect(Self.sameJSON(fast, reference))
    }

    @Test func nestedContainersUsedInOrderAreWritten() throws {
        let fast = try #require(JSONFastEncoder.encode(Nested()))
        #expect(
            String(decoding: fast, as: UTF8.self) == #"{"inner":{"x":1,"list":["a",{"y":true}]},"z":"after","n":null}"#)
        let reference = try Self.foundation(Nested())
        #expect(Self.sameJSON(fast, reference))
    }

    struct AnyKey: CodingKey, ExpressibleByStringLiteral {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
        init(stringLiteral value: String) { stringValue = value }
    }

    /// Writes with `body`; used to make the writer face what it must hand over.
    struct Custom: Encodable {
        let body: @Sendable (any Encoder) throws -> Void
        func encode(to encoder: any Encoder) throws { try body(encoder) }
    }

    struct Failure: Error {}

    @Test func whatItIsNotSureAboutIsHandedOver() throws {
        #expect(JSONFastEncoder.encode([Data([1, 2, 3])]) == nil)
        #expect(JSONFastEncoder.encode(["u": URL(string: "https://example.com/a")!]) == nil)
        #expect(JSONFastEncoder.encode([Decimal(string: "1.10")!]) == nil)
        #expect(JSONFastEncoder.encode([1.0, .nan]) == nil)
        #expect(JSONFastEncoder.encode([Float.infinity]) == nil)
        #expect(JSONFastEncoder.encode([Date(timeIntervalSince1970: -11_676_096_001)]) == nil)  // 1599
        #expect(JSONFastEncoder.encode([Date(timeIntervalSince1970: 253_402_300_800)]) == nil)  // 10000
        #expect(JSONFastEncoder.encode([Date(timeIntervalSince1970: -0.5)]) == nil)
        if #available(macOS 15, *) { #expect(JSONFastEncoder.encode([Int128(1)]) == nil) }

        let twice = Custom { encoder in
            var object = encoder.container(keyedBy: AnyKey.self)
            try object.encode(1, forKey: "k")
            try object.encode(2, forKey: "k")
        }
        #expect(JSONFastEncoder.encode(twice) == nil)
        let twiceAfterMany = Custom { encoder in  // past the point where the written keys go into a set
            var object = encoder.container(keyedBy: AnyKey.self)
            for index in 0..<40 { try object.encode(index, forKey: AnyKey(stringValue: "k\(index)")) }
            try object.encode(0, forKey: "k3")
        }
        #expect(JSONFastEncoder.encode(twiceAfterMany) == nil)
        let superEncoder = Custom { encoder in
            var object = encoder.container(keyedBy: AnyKey.self)
            try "x".encode(to: object.superEncoder())
        }
        #expect(JSONFastEncoder.encode(superEncoder) == nil)
        let readsPath = Custom { encoder in
            var single = encoder.singleValueContainer()
            try single.encode(encoder.codingPath.count)
        }
        #expect(JSONFastEncoder.encode([readsPath]) == nil)
        #expect(JSONFastEncoder.encode([Custom { _ in }]) == nil)  // encodes nothing
        let twoValues = Custom { encoder in
            var single = encoder.singleValueContainer()
            try single.encode(1)
            try single.encode(2)
        }
        #expect(JSONFastEncoder.encode([twoValues]) == nil)
        let reusesClosed = Custom { encoder in
            var object = encoder.container(keyedBy: AnyKey.self)
            var inner = object.nestedContainer(keyedBy: AnyKey.self, forKey: "a")
            try object.encode(1, forKey: "b")
            try inner.encode(2, forKey: "late")  // JSONEncoder puts it inside "a"; a stream cannot
        }
        #expect(JSONFastEncoder.encode(reusesClosed) == nil)
        #expect(JSONFastEncoder.encode([Custom { _ in throw Failure() }]) == nil)
    }

    @Test func theCodecWritesWhatJSONEncoderWouldAndThrowsItsErrors() throws {
        let codec = JSONMessageCodec()
        let handedOver = ["data": Data([0, 255])]
        let handedOverReference = try Self.foundation(handedOver)
        #expect(try codec.encode(handedOver) == handedOverReference)
        let sample = Generated.Sample(
            id: 7, name: "n/ä\"\n", price: 9.5, small: -3, big: .max, flag: true,
            when: Date(timeIntervalSince1970: 1_700_000_000),
            note: nil, tags: ["a"], inner: .init(a: 1, b: [nil, 2.25], c: ["k": 1]), matrix: [[1, 2], []])
        let sampleReference = try Self.foundation(sample)
        #expect(Self.sameJSON(try codec.encode(sample), sampleReference))
        #expect(throws: EncodingError.self) { try codec.encode([Double.infinity]) }
        #expect(throws: Failure.self) { try codec.encode(Custom { _ in throw Failure() }) }
    }
}
