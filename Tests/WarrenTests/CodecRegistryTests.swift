import Testing

@testable import Warren

@Suite("Codecs by content type")
struct CodecRegistryTests {
    @Test func codecIsChosenByContentType() {
        let codecs = CodecRegistry()
        #expect(codecs.codec(for: nil)?.contentType == "application/json")
        #expect(codecs.codec(for: "application/json; charset=utf-8")?.contentType == "application/json")
        #expect(codecs.codec(for: "Application/JSON")?.contentType == "application/json")
        #expect(codecs.codec(for: "text/xml") == nil)
    }

    /// A codec that says which it is.
    struct NamedCodec: MessageCodec {
        var contentType: String
        var name: String
        func encode<M: Encodable>(_ message: M) throws -> [UInt8] { Array(name.utf8) }
        func decode<M: Decodable>(_ type: M.Type, from body: [UInt8]) throws -> M {
            throw WarrenError(.nothingToConsume, name)
        }
    }

    @Test func theUsualContentTypeFindsTheSameCodecAsALookup() throws {
        func name(_ codec: (any MessageCodec)?) throws -> String? {
            try codec.map { String(decoding: try $0.encode(0), as: UTF8.self) }
        }
        // Another codec registered for the default's content type replaces it, as the registry always did.
        var codecs = CodecRegistry(
            default: NamedCodec(contentType: "application/x", name: "default"),
            others: [
                NamedCodec(contentType: "application/x", name: "other"),
                NamedCodec(contentType: "text/plain", name: "text"),
            ])
        #expect(try name(codecs.codec(for: "application/x")) == "other")
        #expect(try name(codecs.codec(for: nil)) == "default")
        #expect(try name(codecs.codec(for: "text/plain")) == "text")
        // A new default is found for its content type once it is registered; it is used for deliveries without one.
        codecs.defaultCodec = NamedCodec(contentType: "text/plain", name: "new default")
        #expect(try name(codecs.codec(for: "text/plain")) == "text")
        #expect(try name(codecs.codec(for: nil)) == "new default")
        #expect(try name(codecs.codec(for: "application/x")) == "other")
    }
}
