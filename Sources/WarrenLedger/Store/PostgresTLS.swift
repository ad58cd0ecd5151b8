// Built with the PostgreSQL trait (on by default): without it, WarrenLedger needs neither postgres-nio nor swift-nio-ssl.
#if PostgreSQL
    import Foundation
    import NIOSSL
    import PostgresNIO
    import Warren

    /// How a PostgreSQL URL asks for TLS: libpq's `sslmode` and `sslrootcert` query parameters, with libpq's meanings, on
    /// postgres-nio's TLS configuration.
    ///
    /// | `sslmode` | encrypted | certificate checked |
    /// |---|---|---|
    /// | `disable` | never | — |
    /// | `allow`, `prefer` (the default) | when the server offers it | no |
    /// | `require` | always | no (as `verify-ca` when `sslrootcert` is given, as libpq does) |
    /// | `verify-ca` | always | signed by a trusted root |
    /// | `verify-full` | always | signed by a trusted root, for the host of the URL (its name, or its IP address) |
    ///
    /// `sslrootcert` is a PEM file of the roots to trust, or `system` for the system's (the default for `verify-*`).
    public struct PostgresTLSMode: Sendable, Equatable {
        public enum Mode: String, Sendable, CaseIterable {
            case disable, allow, prefer, require
            case verifyCA = "verify-ca"
            case verifyFull = "verify-full"
        }

        public var mode: Mode
        /// The PEM file of the roots to trust; `nil` for the system's.
        public var rootCertificates: String?

        public init(mode: Mode = .prefer, rootCertificates: String? = nil) {
            self.mode = mode
            self.rootCertificates = rootCertificates
        }

        /// Reads `sslmode` and `sslrootcert` from a URL's query.
        /// - Throws: ``LedgerStoreError`` (``LedgerStoreError/Code/invalidURL``) for an unknown mode or parameter, or a
        ///   root file that cannot be read.
        init(query items: [URLQueryItem]) throws {
            var mode = Mode.prefer
            var roots: String?
            for item in items {
                switch item.name {
                case "sslmode":
                    guard let value = item.value, let parsed = Mode(rawValue: value) else {
                        throw LedgerStoreError(
                            .invalidURL,
                            "sslmode must be one of \(Mode.allCases.map(\.rawValue).joined(separator: ", ")), not '\(item.value ?? "")'"
                        )
                    }
                    mode = parsed
                case "sslrootcert":
                    guard let value = item.value, !value.isEmpty else {
                        throw LedgerStoreError(.invalidURL, "sslrootcert needs a file (or system)")
                    }
                    if value != "system" {
                        guard FileManager.default.isReadableFile(atPath: value) else {
                            throw LedgerStoreError(.invalidURL, "sslrootcert: cannot read \(value)")
                        }
                        roots = value
                    }
                default:
                    throw LedgerStoreError(
                        .invalidURL,
                        "unknown parameter '\(item.name)' in the PostgreSQL URL (known: sslmode, sslrootcert)")
                }
            }
            self.init(mode: mode, rootCertificates: roots)
        }

        /// Whether a connection is refused rather than made without encryption.
        public var requiresEncryption: Bool { mode == .require || mode == .verifyCA || mode == .verifyFull }

        /// NIOSSL's client configuration for the mode; `nil` for `disable`.
        func configuration() throws -> TLSConfiguration? {
            var configuration = TLSConfiguration.makeClientConfiguration()
            switch mode {
            case .disable: return nil
            case .allow, .prefer: configuration.certificateVerification = .none
            case .require:
                configuration.certificateVerification = rootCertificates == nil ? .none : .noHostnameVerification
            case .verifyCA: configuration.certificateVerification = .noHostnameVerification
            case .verifyFull: configuration.certificateVerification = .fullVerification
            }
            if let rootCertificates { configuration.trustRoots = .file(rootCertificates) }
            return configuration
        }

        /// For the connection pool.
        func client() throws -> PostgresClient.Configuration.TLS {
            guard let configuration = try configuration() else { return .disable }
            return requiresEncryption ? .require(configuration) : .prefer(configuration)
        }

        /// For one connection (the store's check at start).
        func connection() throws -> PostgresConnection.Configuration.TLS {
            guard let configuration = try configuration() else { return .disable }
            let context = try NIOSSLContext(configuration: configuration)
            return requiresEncryption ? .require(context) : .prefer(context)
        }
    }
#endif
