// ESLint for the package's Lightning web components: Salesforce's recommended LWC rules
// (@salesforce/eslint-config-lwc 4, which supports only ESLint 9 and its flat configuration).
'use strict';

const { defineConfig } = require('eslint/config');
const lwcRecommended = require('@salesforce/eslint-config-lwc/recommended');
const globals = require('globals');

module.exports = defineConfig([
    {
        files: ['force-app/main/default/lwc/**/*.js'],
        extends: [lwcRecommended]
    },
    {
        // Tests run in Node under Jest, and their wire adapters are test doubles.
        files: ['force-app/main/default/lwc/**/__tests__/**/*.js'],
        extends: [lwcRecommended],
        rules: {
            '@lwc/lwc/no-unexpected-wire-adapter-usages': 'off'
        },
        languageOptions: {
            globals: {
                ...globals.node,
                ...globals.jest
            }
        }
    }
]);
