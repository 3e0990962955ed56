"""The Litestar HTTP adapter: routes, response rendering and error mapping to the contract."""
