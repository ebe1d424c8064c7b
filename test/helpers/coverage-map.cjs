// Coverage is measured over the library (lib/), not over the tests themselves.
module.exports = () => ['lib/**/*.ts'];
