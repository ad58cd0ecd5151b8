import Foundation
import PropertyBased
import Synchronization
import Testing

@testable import Warren
@testable import WarrenJSON

/// The fast JSON path must never read a body differently from Foundation's `JSONDecoder` (set up as
/// `JSONMessageCodec` sets it up), and must take the fast path for the usual shapes of messages.
@Suite("JSON fast path agrees with JSONDecoder")
struct JSONFastDecoderTests {
    struct Inner: Codable, Equatable, Sendable {
        var a: Int16
        var b: [Double?]
        var c: [String: Int]
    }

    struct Sample: Codable, Equatable, Sendable {
        var id: Int
        var name: String
        var price: Double
        var small: Int8
        var big: UInt64
        var flag: Bool
        var when: Date
        var note: String?
        var tags: [String]
        var inner: Inner?
        var matrix: [[Int32]]
    }

    static let foundation: JSONDecoder = {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return decoder
    }()

    static func encode<T: Encodable>(_ value: T) throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        return Array(try encoder.encode(value))
    }

    /// ASCII (control characters and quotes included, which JSONEncoder escapes) and a few multi-byte characters.
    static let specials: [Character] = ["é", "ß", "漢", "😀", "\u{2028}", "\u{FEFF}"]
    static let text = Gen.int(in: 0...(127 + specials.count)).map { code -> Character in
        code < 128 ? Character(Unicode.Scalar(UInt8(code))) : specials[code - 128]
    }.string(of: 0...24)
    /// Ordinary amounts, any finite bit pattern, and subnormal numbers.
    static let double = Gen.int().map { seed -> Double in
        switch seed & 3 {
        case 0: return Double((seed >> 2) % 64_000_000) / 64
        case 1:
            let any = Double(bitPattern: UInt64(bitPattern: Int64(seed)))
            return any.isFinite ? any : Double(seed)
        default: return Double(bitPattern: UInt64(seed.magnitude) % 0x0010_0000_0000_0000)
        }
    }
    static let inner = zip(
        Gen.int(in: Int(Int16.min)...Int(Int16.max)).map { Int16($0) }, double.optional.array(of: 0...3),
        zip(Gen.letterOrNumber.string(of: 0...8), Gen.int()).dictionary(ofAtMost: 0...3)
    ).map { Inner(a: $0, b: $1, c: $2) }
    static let sample = zip(
        zip(Gen.int(), text, double, Gen.int(in: -128...127).map { Int8($0) }),
        zip(Gen.int().map { UInt64(bitPattern: Int64($0)) }, Gen.bool, Gen.int(in: 0...253_402_300_799)),
        zip(
            text.optional, text.array(of: 0...3), inner.optional,
            Gen.int(in: Int(Int32.min)...Int(Int32.max)).map { Int32($0) }.array(of: 0...3).array(of: 0...2))
    ).map { first, second, third in
        Sample(
            id: first.0, name: first.1, price: first.2, small: first.3, big: second.0, flag: second.1,
            when: Date(timeIntervalSince1970: Double(second.2)), note: third.0, tags: third.1, inner: third.2,
            matrix: third.3)
    }

    @Test func generatedMessagesTakeTheFastPathAndReadAsJSONDecoderReadsThem() async {
        await propertyCheck(count: 400, input: Self.sample) { sample in
            let body = try Self.encode(sample)
            let fast = JSONFastDecoder.decode(Sample.self, from: body)
            #expect(fast == sample)
            #expect(fast == (try Self.foundation.decode(Sample.self, from: Data(body))))
        }
    }

    /// JSON-like text built from fragments that sit on the edges: numbers JSONDecoder converts, invalid numbers,
    /// escapes, surrogates, duplicate keys, odd whitespace, dates in several forms.
    static let fragment = Gen.element(of: [
        "0", "-0", "1", "-1", "1.0", "1.5", "1e2", "1E-2", "-0.0", "01", "+1", ".5", "1.", "2e", "1e400", "1e-400",
        "9223372036854775807", "9223372036854775808", "-9223372036854775808", "18446744073709551616", "4.9e-324",
        "true", "false", "null", "nul", "\"\"", "\"a\"", "\"\\u00e9\"", "\"\\ud83d\\ude00\"", "\"\\ud83d\"", "\"\\x\"",
        "\"2026-11-25T16:58:30Z\"", "\"2026-11-25T16:58:30.5Z\"", "\"2026-02-30T00:00:00Z\"",
        "\"1969-12-31T23:59:59Z\"",
        "\"2026-11-25T16:58:30+01:00\"", "\"2024-02-29T23:59:59Z\"", "\"9999-12-31T23:59:59Z\"",
        "\"2026-11-25 16:58:30Z\"",
        "[]", "[1,2]", "[1,]", "{}", " ", "\n", "\t", ",", ":", "{\"id\":1,\"id\":2}", "\"\u{7}\"",
    ])
    static let keyName = Gen.element(of: ["id", "name", "price", "when", "flag", "tags", "x"])
    static let document = zip(keyName, fragment).array(of: 0...4).map { pairs in
        "{" + pairs.map { "\"\($0!)\":\($1!)" }.joined(separator: ",") + "}"
    }

    struct Loose: Codable, Equatable {
        var id: Int?
        var name: String?
        var price: Double?
        var when: Date?
        var flag: Bool?
        var tags: [Int]?
        var x: UInt8?
    }

    struct Strict: Codable, Equatable {
        var id: Int
        var price: Double
    }

    @Test func edgyDocumentsAreNeverReadDifferently() async {
        let readByFastPath = Mutex(0)
        await propertyCheck(count: 1500, input: Self.document) { document in
            let body = Array(document.utf8)
            let read = [
                Self.expectAgreement(Loose.self, body), Self.expectAgreement(Strict.self, body),
                Self.expectAgreement([String: Int].self, body), Self.expectAgreement([String: Date].self, body),
                Self.expectAgreement([String: Double].self, body),
            ].filter { $0 }.count
            readByFastPath.withLock { $0 += read }
        }
        // The documents are valid often enough for the comparison to mean something.
        #expect(readByFastPath.withLock { $0 } > 500)
    }

    /// When the fast path reads a value, JSONDecoder reads the same value. Returns whether the fast path read it.
    @discardableResult
    static func expectAgreement<T: Decodable & Equatable>(_ type: T.Type, _ body: [UInt8]) -> Bool {
        guard let fast = JSONFastDecoder.decode(type, from: body) else { return false }
        let slow = try? foundation.decode(type, from: Data(body))
        #expect(slow == fast, "\(T.self) from \(String(decoding: body, as: UTF8.self))")
        return true
    }

    @Test(arguments: [
        #"{"id":1.0,"price":1}"#, #"{"id":1e2,"price":1}"#, #"{"id":1,"price":1e400}"#, #"{"id":1,"id":2,"price":1}"#,
        #"{"id":1,"price":1,}"#, #"{"id":1,"price":"1"}"#,
    ])
    func givesUpWhereJSONDecoderDecides(_ document: String) {
        #expect(JSONFastDecoder.decode(Strict.self, from: Array(document.utf8)) == nil)
    }

    /// Strings are scanned 8 bytes at a time: every byte value, an escape and a multi-byte character, at every
    /// position of such a word and across word boundaries, must read as JSONDecoder reads it (or be handed over).
    @Test func everyByteAtEveryPositionOfAStringReadsAsJSONDecoderReadsIt() throws {
        var readByFastPath = 0
        let insertions: [[UInt8]] =
            (0...255).map { [UInt8($0)] } + [Array(#"\""#.utf8), Array(#"\\"#.utf8), Array("é".utf8), Array("😀".utf8)]
        for insertion in insertions {
            for offset in 0..<18 {
                let body =
                    Array(#"[""#.utf8) + Array(repeating: UInt8(ascii: "a"), count: offset) + insertion
                    + Array(repeating: UInt8(ascii: "b"), count: 19 - offset) + Array(#""]"#.utf8)
                let expected = try? Self.foundation.decode([String].self, from: Data(body))
                let fast = JSONFastDecoder.decode([String].self, from: body)
                if let fast {
                    #expect(fast == expected, "\(insertion) at \(offset)")
                    readByFastPath += 1
                }
            }
        }
        // Printable ASCII other than the quote and the backslash, the two escapes and the two characters: fast.
        #expect(readByFastPath >= (95 - 2 + 4) * 18)
    }

    @Test func invalidUTF8AndDeepNestingGiveUpWithoutCrashing() {
        #expect(JSONFastDecoder.decode([String].self, from: [0x5B, 0x22, 0xFF, 0x22, 0x5D]) == nil)
        let deep = Array(String(repeating: "[", count: 100_000).utf8)
        #expect(JSONFastDecoder.decode([Int].self, from: deep) == nil)
        let nestedButFine = Array((String(repeating: "[", count: 200) + String(repeating: "]", count: 200)).utf8)
        #expect(JSONFastDecoder.decode(Nested.self, from: nestedButFine) != nil)
    }

    indirect enum Nested: Decodable {
        case list([Nested])
        init(from decoder: any Decoder) throws {
            self = .list(try [Nested](from: decoder))
        }
    }

    /// A type that catches an error and tries something else: when the fast path gave up on the way, the value is
    /// JSONDecoder's even though the type's `init(from:)` succeeded.
    struct Forgiving: Decodable, Equatable {
        var amount: Int
        enum CodingKeys: CodingKey { case amount }
        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            amount = (try? container.decode(Int.self, forKey: .amount)) ?? -1
        }
    }

    @Test func aSwallowedGiveUpStillDefersToJSONDecoder() throws {
        let body = Array(#"{"amount":5.0}"#.utf8)
        #expect(JSONFastDecoder.decode(Forgiving.self, from: body) == nil)
        #expect(
            try JSONMessageCodec().decode(Forgiving.self, from: body)
                == (try Self.foundation.decode(Forgiving.self, from: Data(body))))
        #expect(try JSONMessageCodec().decode(Forgiving.self, from: Array(#"{"amount":"x"}"#.utf8)).amount == -1)
    }

    struct Priced: Codable, Equatable {
        var sku: String
        var price: Decimal
    }

    struct Plain: Codable, Equatable {
        var sku: String
        var cents: Int
    }

    @Test func aTypeTheFastPathKeepsHandingOverGoesStraightToJSONDecoder() throws {
        let codec = JSONMessageCodec()
        for n in 0..<(FastPathRecord.givingUpLimit + 4) {
            let priced = Priced(sku: "s\(n)", price: Decimal(n) / 4)
            #expect(try codec.decode(Priced.self, from: Self.encode(priced)) == priced)
            #expect(codec.skipsFastPath(for: Priced.self) == (n + 1 >= FastPathRecord.givingUpLimit))
            // Bad bodies do not count against a type: JSONDecoder cannot read them either.
            #expect(throws: (any Error).self) { try codec.decode(Plain.self, from: Array(#"{"sku":1}"#.utf8)) }
            #expect(
                try codec.decode(Plain.self, from: Self.encode(Plain(sku: "p", cents: n))) == Plain(sku: "p", cents: n))
        }
        #expect(!codec.skipsFastPath(for: Plain.self))
    }

    @Test func errorsAreJSONDecodersOwn() {
        let body = Array(#"{"price":2}"#.utf8)
        var fromCodec: String?
        var fromFoundation: String?
        do { _ = try JSONMessageCodec().decode(Strict.self, from: body) } catch { fromCodec = "\(error)" }
        do { _ = try Self.foundation.decode(Strict.self, from: Data(body)) } catch { fromFoundation = "\(error)" }
        #expect(fromCodec != nil)
        #expect(fromCodec == fromFoundation)
    }

    @Test func internetDatesMatchFoundationAcrossTheirRange() async {
        await propertyCheck(count: 500, input: Gen.int(in: 0...253_402_300_799)) { seconds in
            let date = Date(timeIntervalSince1970: Double(seconds))
            let body = try Self.encode([date])
            #expect(JSONFastDecoder.decode([Date].self, from: body) == [date])
        }
    }
}
