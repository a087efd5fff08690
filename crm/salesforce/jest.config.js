// Jest for the package's Lightning web components: sfdx-lwc-jest's configuration, which stubs the
// lightning/* modules and gives their wire adapters test utilities (emit, emitErrors, getLastConfig).
const { jestConfig } = require('@salesforce/sfdx-lwc-jest/config');

module.exports = {
    ...jestConfig,
    modulePathIgnorePatterns: ['<rootDir>/.localdevserver']
};
