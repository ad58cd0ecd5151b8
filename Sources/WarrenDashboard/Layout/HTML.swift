import Foundation
import HTTPTypes
import Hummingbird

/// A fragment of HTML. Its literal parts are markup written here; every `String` interpolated into it is escaped, so
/// text from a message (a type, an error, a header, a body) can only ever be text. Interpolating another `HTML`
/// embeds it as it is.
struct HTML: Sendable, ExpressibleByStringInterpolation {
    private(set) var markup: String

    init(stringLiteral literal: String) { markup = literal }
    init(stringInterpolation: Interpolation) { markup = stringInterpolation.markup }
    private init(markup: String) { self.markup = markup }

    static let empty = HTML(markup: "")

    static func + (lhs: HTML, rhs: HTML) -> HTML { HTML(markup: lhs.markup + rhs.markup) }

    /// Fragments one after the other.
    static func joined(_ fragments: some Sequence<HTML>) -> HTML {
        HTML(markup: fragments.reduce(into: "") { $0 += $1.markup })
    }

    struct Interpolation: StringInterpolationProtocol {
        fileprivate var markup = ""

        init(literalCapacity: Int, interpolationCount: Int) {
            markup.reserveCapacity(literalCapacity + 16 * interpolationCount)
        }
        mutating func appendLiteral(_ literal: String) { markup += literal }
        mutating func appendInterpolation(_ text: String) { markup += HTML.escape(text) }
        mutating func appendInterpolation(_ text: String?) { markup += HTML.escape(text ?? "") }
        mutating func appendInterpolation(_ number: some BinaryInteger) { markup += String(number) }
        mutating func appendInterpolation(_ fragment: HTML) { markup += fragment.markup }
        mutating func appendInterpolation(_ fragments: [HTML]) { markup += HTML.joined(fragments).markup }
    }

    /// `text` with `&`, `<`, `>`, `"` and `'` replaced by character references: safe in element content and in quoted
    /// attribute values.
    static func escape(_ text: String) -> String {
        var escaped = ""
        escaped.reserveCapacity(text.utf8.count)
        for scalar in text.unicodeScalars {
            switch scalar {
            case "&": escaped += "&amp;"
            case "<": escaped += "&lt;"
            case ">": escaped += "&gt;"
            case "\"": escaped += "&quot;"
            case "'": escaped += "&#39;"
            default: escaped.unicodeScalars.append(scalar)
            }
        }
        return escaped
    }

    /// A response carrying this page, marked not to be cached nor framed by another site.
    func response(status: HTTPResponse.Status = .ok, headers extra: HTTPFields = [:]) -> Response {
        var headers = Self.pageHeaders
        headers.append(contentsOf: extra)
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(string: markup)))
    }

    private static let pageHeaders: HTTPFields = [
        .contentType: "text/html; charset=utf-8",
        .cacheControl: "no-store",
        HTTPField.Name("X-Frame-Options")!: "DENY",
        HTTPField.Name("X-Content-Type-Options")!: "nosniff",
        HTTPField.Name("Referrer-Policy")!: "same-origin",
        // Nothing but this server's own markup and styles: even if text escaped the escaping, no script would run.
        HTTPField.Name("Content-Security-Policy")!:
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ]
}

/// Building links: path segments and query strings, percent-encoded (then escaped where they land in markup).
enum Link {
    private static let unreserved = CharacterSet(
        charactersIn: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~")

    static func encode(_ component: String) -> String {
        component.addingPercentEncoding(withAllowedCharacters: unreserved) ?? ""
    }

    /// `path` followed by the non-empty parameters as a query string.
    static func to(_ path: String, _ parameters: [(String, String?)] = []) -> String {
        let pairs = parameters.compactMap { name, value in
            value.flatMap { $0.isEmpty ? nil : "\(encode(name))=\(encode($0))" }
        }
        return pairs.isEmpty ? path : "\(path)?\(pairs.joined(separator: "&"))"
    }
}

/// How times, durations and bodies read on a page.
enum Format {
    /// `2026-11-29 10:00:03.123 UTC`.
    static func time(_ milliseconds: Int64?) -> String {
        guard let milliseconds else { return "" }
        let seconds = Double(milliseconds) / 1000
        var time = time_t(seconds.rounded(.down))
        var parts = tm()
        gmtime_r(&time, &parts)
        return String(
            format: "%04d-%02d-%02d %02d:%02d:%02d.%03d UTC", Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1,
            Int(parts.tm_mday),
            Int(parts.tm_hour), Int(parts.tm_min), Int(parts.tm_sec), Int(milliseconds % 1000 + 1000) % 1000)
    }

    /// `850 ms`, `12.3 s`, `4 min 10 s`, `3 h 5 min`.
    static func duration(_ milliseconds: Int64?) -> String {
        guard let milliseconds else { return "" }
        switch milliseconds {
        case ..<1_000: return "\(milliseconds) ms"
        case ..<60_000 where milliseconds % 1000 == 0: return "\(milliseconds / 1000) s"
        case ..<60_000: return String(format: "%.1f s", Double(milliseconds) / 1000)
        case ..<3_600_000 where milliseconds % 60_000 < 1000: return "\(milliseconds / 60_000) min"
        case ..<3_600_000: return "\(milliseconds / 60_000) min \(milliseconds % 60_000 / 1000) s"
        case _ where milliseconds % 3_600_000 < 60_000: return "\(milliseconds / 3_600_000) h"
        default: return "\(milliseconds / 3_600_000) h \(milliseconds % 3_600_000 / 60_000) min"
        }
    }

    /// An attempt's queue wait: exact from Warren's published-at header, else the approximate whole seconds since a
    /// foreign message's AMQP timestamp, marked so.
    static func queueWait(milliseconds: Int64?, approximateSeconds: Int64?) -> HTML {
        if let milliseconds { return "\(duration(milliseconds))" }
        guard let approximateSeconds, approximateSeconds >= 0 else { return .empty }
        let (product, overflow) = approximateSeconds.multipliedReportingOverflow(by: 1000)
        return
            "<span title=\"approximate: from the message's AMQP timestamp, which has whole seconds\">≈ \(duration(overflow ? .max : product))</span>"
    }

    /// Bytes as a hex dump: offset, sixteen bytes in hex, and the printable ASCII ones.
    static func hexDump(_ bytes: [UInt8]) -> String {
        var lines: [String] = []
        var offset = 0
        while offset < bytes.count {
            let row = bytes[offset..<min(offset + 16, bytes.count)]
            let hex = row.map { byte in String(byte, radix: 16).leftPadded(to: 2, with: "0") }.joined(separator: " ")
            let ascii = String(row.map { (0x20..<0x7f).contains($0) ? Character(UnicodeScalar($0)) : "." })
            lines.append(
                "\(String(offset, radix: 16).leftPadded(to: 8, with: "0"))  \(hex.padding(toLength: 47, withPad: " ", startingAt: 0))  \(ascii)"
            )
            offset += 16
        }
        return lines.joined(separator: "\n")
    }
}

extension String {
    fileprivate func leftPadded(to width: Int, with pad: Character) -> String {
        count >= width ? self : String(repeating: pad, count: width - count) + self
    }
}
