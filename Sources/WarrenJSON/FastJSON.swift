/// Warren's JSON fast path, the one entry point of this module: reads and writes `Codable` values several times
/// cheaper than Foundation's coders for the shapes messages usually have, and gives up (`nil`) on anything it is not
/// certain to handle exactly as `JSONDecoder` / `JSONEncoder` set up with `.iso8601` dates would, so the caller asks
/// them instead. `JSONMessageCodec` is its user; `make fuzz` checks it against Foundation.
package enum FastJSON {
    /// The JSON text of `value` as `JSONEncoder` writes it (but for the order of an object's keys), or `nil` when
    /// `JSONEncoder` has to do it.
    package static func encode<T: Encodable>(_ value: T) -> [UInt8]? {
        JSONFastEncoder.encode(value)
    }

    /// The value `JSONDecoder` reads from `body`, or `nil` when `JSONDecoder` has to decide (errors included).
    package static func decode<T: Decodable>(_ type: T.Type, from body: [UInt8]) -> T? {
        JSONFastDecoder.decode(type, from: body)
    }
}
