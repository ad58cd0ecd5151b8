import Foundation
import WarrenJSON

/// The differential check behind `make fuzz` and its fixed-seed pass: for any bytes, Warren's JSON fast path either
/// gives up or reads exactly what Foundation's `JSONDecoder` reads, and what it writes reads back, with
/// `JSONDecoder`, as the value it wrote. A disagreement is a crash with both readings, which libFuzzer saves as a
/// reproducer.
enum Differential {
    /// A message with every shape the fast path claims to read: strings, the integer widths, floating point,
    /// booleans, optionals, arrays, dictionaries, nested objects, dates.
    struct Sample: Codable, Equatable {
        struct Inner: Codable, Equatable {
            var name: String
            var count: Int16
            var ratio: Double?
        }

        var id: Int
        var text: String
        var small: UInt8?
        var big: Int64?
        var unsigned: UInt32?
        var value: Double?
        var single: Float?
        var flag: Bool?
        var tags: [String]?
        var scores: [Int]?
        var attributes: [String: Int]?
        var inner: Inner?
        var children: [Inner]?
        var at: Date?
    }

    static let decoder: JSONDecoder = {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return decoder
    }()

    /// Checks `bytes` as a `Sample`, as a `[Sample.Inner]`, as a `String` and as a `[String: Double]`; returns
    /// whether the fast path read them as a `Sample` (rather than giving up).
    @discardableResult
    static func check(_ bytes: [UInt8]) -> Bool {
        let read = agree(Sample.self, bytes)
        agree([Sample.Inner].self, bytes)
        agree(String.self, bytes)
        agree([String: Double].self, bytes)
        return read
    }

    @discardableResult
    private static func agree<T: Codable & Equatable>(_ type: T.Type, _ bytes: [UInt8]) -> Bool {
        guard let fast = FastJSON.decode(type, from: bytes) else { return false }  // gave up: Foundation decides
        let foundation: T
        do {
            foundation = try decoder.decode(type, from: Data(bytes))
        } catch {
            fatalError("the fast path read \(T.self) \(fast) where JSONDecoder failed (\(error)) from \(show(bytes))")
        }
        guard fast == foundation else {
            fatalError("the fast path read \(fast), JSONDecoder \(foundation), as \(T.self) from \(show(bytes))")
        }
        guard let written = FastJSON.encode(fast) else { return true }  // gave up: JSONEncoder writes it
        guard let reread = try? decoder.decode(type, from: Data(written)), reread == fast else {
            fatalError("the fast path wrote \(show(written)) for \(fast), which JSONDecoder does not read back as it")
        }
        return true
    }

    private static func show(_ bytes: [UInt8]) -> String {
        String(validating: bytes, as: UTF8.self).map { "\"\($0)\"" } ?? "bytes \(bytes)"
    }
}

/// A small, seedable generator (SplitMix64): the fixed-seed pass sees the same inputs on every machine.
struct SeededGenerator: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) {
        state = seed
    }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Inputs for the fixed-seed pass: valid messages written by `JSONEncoder`, most of them then mutated (bytes changed,
/// inserted, removed or repeated) so that both the fast path and its ways of giving up are exercised.
struct InputMaker {
    var random: SeededGenerator
    /// Whether inputs are mutated after they were written.
    var mutates = true
    private let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        return encoder
    }()
    private static let alphabet = Array(#"{}[]":,.-+0123456789eE \tnulltruefalse\u00é€"#.utf8)

    mutating func next() -> [UInt8] {
        var bytes = (try? Array(encoder.encode(sample()))) ?? []
        guard mutates else { return bytes }
        for _ in 0..<Int.random(in: 0...3, using: &random) { mutate(&bytes) }
        return bytes
    }

    private mutating func sample() -> Differential.Sample {
        func maybe<T>(_ make: () -> T) -> T? { Bool.random(using: &random) ? make() : nil }
        func text() -> String {
            let pieces = ["a", "é", "\"", "\\", "/", "\n", "\u{1}", "€", "😀", " ", "z9", "\u{7F}"]
            return (0..<Int.random(in: 0...6, using: &random)).map { _ in pieces.randomElement(using: &random)! }
                .joined()
        }
        func inner() -> Differential.Sample.Inner {
            .init(
                name: text(), count: .random(in: .min ... .max, using: &random),
                ratio: maybe { Double.random(in: -1e6...1e6, using: &random) })
        }
        return Differential.Sample(
            id: .random(in: -1_000_000...1_000_000, using: &random), text: text(),
            small: maybe { .random(in: 0 ... .max, using: &random) },
            big: maybe { .random(in: .min ... .max, using: &random) },
            unsigned: maybe { .random(in: 0 ... .max, using: &random) },
            value: maybe {
                [
                    0.1, -2.5, 1e20, .leastNonzeroMagnitude, .greatestFiniteMagnitude,
                    Double.random(in: -1...1, using: &random),
                ].randomElement(using: &random)!
            },
            single: maybe { Float.random(in: -10...10, using: &random) }, flag: maybe { Bool.random(using: &random) },
            tags: maybe { (0..<Int.random(in: 0...3, using: &random)).map { _ in text() } },
            scores: maybe {
                (0..<Int.random(in: 0...4, using: &random)).map { _ in .random(in: -99...99, using: &random) }
            },
            attributes: maybe { ["k": 1, text(): .random(in: 0...9, using: &random)] }, inner: maybe(inner),
            children: maybe { (0..<Int.random(in: 0...2, using: &random)).map { _ in inner() } },
            at: maybe { Date(timeIntervalSince1970: Double(Int.random(in: 0...4_000_000_000, using: &random))) })
    }

    private mutating func mutate(_ bytes: inout [UInt8]) {
        guard !bytes.isEmpty else { return }
        let at = Int.random(in: 0..<bytes.count, using: &random)
        switch Int.random(in: 0..<4, using: &random) {
        case 0: bytes[at] = Self.alphabet.randomElement(using: &random)!
        case 1: bytes.insert(Self.alphabet.randomElement(using: &random)!, at: at)
        case 2: bytes.remove(at: at)
        default: bytes.insert(contentsOf: bytes[at..<min(bytes.count, at + 8)], at: at)
        }
    }
}
