// CommonJS entry. zofo is an ES module: Node >= 20.19 can require() it directly;
// older Node gets a clear error saying what to do instead.
'use strict';
try {
  module.exports = require('../dist/lib/index.js');
} catch (err) {
  if (err && (err.code === 'ERR_REQUIRE_ESM' || err.code === 'ERR_REQUIRE_ASYNC_MODULE')) {
    const e = new Error(
      'zofo is an ES module and this Node.js (' + process.version + ') cannot require() it. ' + "Use `const zofo = await import('zofo')`, or Node.js >= 20.19.",
    );
    e.code = 'ZOFO_REQUIRE_ESM';
    e.cause = err;
    throw e;
  }
  throw err;
}
